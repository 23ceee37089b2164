//! The page's parts about the two versions of a deploy: the database's connections over time
//! against `max_connections`, the failed requests by phase, instance and version, and the
//! setup and pre-deploy commands with their output.

use std::fmt::Write as _;

use super::super::connections::Connections;
use super::super::record::Role;
use super::super::report::{Rehearsal, secs};
use super::super::steps::StepKind;
use super::super::versions::describe;
use super::draw::{Axis, FAILED, LEFT, RIGHT, WIDTH, axis_frame, esc, nice_step, svg_open, y_axis};
use super::phase_bands;

/// The line of the connections sampled.
pub(super) const CONNECTIONS: &str = "#6a3d9a";

/// The chart of client connections over time, the limit drawn as a dashed line across it.
pub(super) fn connections_chart(out: &mut String, r: &Rehearsal, c: &Connections, x: &Axis) {
    let _ = write!(
        out,
        "<h2>Database connections (client backends, sampled every {} ms, counting the rehearsal's own), against max_connections {}</h2>",
        c.interval.as_millis(),
        c.max_connections
    );
    let (top, bottom, height) = (10.0, 190.0, 212.0);
    let peak = c.peak().map_or(0, |p| p.client_backends);
    let highest = f64::from(peak.max(c.max_connections));
    let y_step = nice_step((highest / 4.0).max(1.0));
    let y_max = ((highest * 1.08) / y_step).ceil().max(1.0) * y_step;
    let y = |n: f64| bottom - n / y_max * (bottom - top);
    svg_open(out, height);
    phase_bands(out, r, x, top, bottom);
    x.ticks(out, top, bottom);
    y_axis(out, y_max, y_step, &y, (top, bottom), "connections");
    // A step line: the count holds until the next sample.
    let mut path = String::new();
    let mut last: Option<f64> = None;
    for s in &c.samples {
        let (px, py) = (x.px(s.at), y(f64::from(s.client_backends)));
        match last {
            None => {
                let _ = write!(path, "M{px:.1} {py:.1}");
            }
            Some(_) => {
                let _ = write!(path, "H{px:.1}V{py:.1}");
            }
        }
        last = Some(py);
    }
    if let Some(s) = c.samples.last() {
        let _ = write!(path, "H{:.1}", x.px(s.at + c.interval).min(WIDTH - RIGHT));
    }
    let _ = write!(
        out,
        r#"<path d="{path}" fill="none" stroke="{CONNECTIONS}" stroke-width="2"/>"#
    );
    let limit = y(f64::from(c.max_connections));
    let _ = write!(
        out,
        r#"<line x1="{LEFT}" x2="{}" y1="{limit:.1}" y2="{limit:.1}" stroke="{FAILED}" stroke-width="1.5" stroke-dasharray="6 4"/><text x="{}" y="{:.1}" style="fill:{FAILED}">max_connections {}</text>"#,
        WIDTH - RIGHT,
        WIDTH - RIGHT + 5.0,
        limit + 4.0,
        c.max_connections
    );
    if let Some(p) = c.peak() {
        let _ = write!(
            out,
            r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{CONNECTIONS}"><title>peak {} at {}</title></circle><text x="{:.1}" y="{:.1}">peak {}</text>"#,
            x.px(p.at),
            y(f64::from(p.client_backends)),
            p.client_backends,
            secs(p.at),
            x.px(p.at) + 6.0,
            (y(f64::from(p.client_backends)) - 6.0).max(top + 10.0),
            p.client_backends
        );
    }
    axis_frame(out, top, bottom);
    out.push_str("</svg>");
}

/// The tables and output of the versions: peaks per phase, failures by phase/instance/version,
/// the setup and pre-deploy commands.
pub(super) fn sections(out: &mut String, r: &Rehearsal) {
    if let Some(c) = &r.connections {
        peaks_table(out, r, c);
    }
    failures_table(out, r);
    for step in [&r.setup, &r.pre_deploy].into_iter().flatten() {
        let colour = if step.succeeded() { "#222" } else { FAILED };
        let _ = write!(
            out,
            "<h2>The {} command</h2><p><code>{}</code>: <b style=\"color:{colour}\">{}</b> after {} (from {} to {}){}</p>",
            step.kind.label(),
            esc(&step.command),
            esc(&step.how()),
            secs(step.end.saturating_sub(step.start)),
            secs(step.start),
            secs(step.end),
            if step.succeeded() || step.kind != StepKind::PreDeploy {
                ""
            } else {
                " &mdash; <b>pre_deploy_failed</b>: the new version was never started and the old instances kept serving"
            }
        );
        if !step.output_tail.is_empty() {
            let _ = write!(out, "<pre>{}</pre>", esc(&step.output_tail.join("\n")));
        }
    }
}

fn peaks_table(out: &mut String, r: &Rehearsal, c: &Connections) {
    let _ = write!(
        out,
        "<h2>Peak database connections by phase</h2><table><tr><th>phase</th><th>peak</th><th>at</th><th>of max_connections {}</th></tr>",
        c.max_connections
    );
    for row in c.peaks_by_phase(&r.phases) {
        let at_limit = row.peak >= c.max_connections;
        let _ = write!(
            out,
            "<tr><td>{}</td><td{}>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&row.label),
            if at_limit {
                format!(" style=\"color:{FAILED};font-weight:600\"")
            } else {
                String::new()
            },
            row.peak,
            secs(row.at),
            if at_limit { "at the limit" } else { "" }
        );
    }
    out.push_str("</table>");
    if let Some(why) = &c.stopped {
        let _ = write!(
            out,
            "<p class=\"muted\">Sampling stopped early: {}</p>",
            esc(why)
        );
    }
}

fn failures_table(out: &mut String, r: &Rehearsal) {
    let groups = r.failure_groups();
    if groups.is_empty() {
        return;
    }
    out.push_str("<h2>Failed requests by phase, instance and version</h2><table><tr><th>phase</th><th>instance</th><th>version</th><th>failed</th><th style=\"text-align:left\">first</th></tr>");
    for g in groups {
        let version = match g.version {
            Some(Role::Old) => "old",
            Some(Role::New) => "new",
            None => "-",
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{version}</td><td>{}</td><td style=\"text-align:left\">{}</td></tr>",
            g.phase.label(),
            esc(g.instance.as_deref().unwrap_or("-")),
            g.failed,
            esc(&describe(&g.first))
        );
    }
    out.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::super::super::connections::tests::samples;
    use super::super::super::report::tests::sample;
    use super::super::page;

    #[test]
    fn the_connection_chart_draws_the_samples_and_the_limit() {
        let mut r = sample();
        assert!(
            !page(&r).contains("Database connections"),
            "no database, no chart"
        );
        r.connections = Some(samples(&[(100, 2), (1500, 9), (2500, 20), (3900, 1)]));
        let html = page(&r);
        assert!(html.contains("against max_connections 20"), "{html}");
        assert!(
            html.contains(">max_connections 20</text>"),
            "the limit line is labelled"
        );
        assert!(html.contains("peak 20"), "the peak is marked");
        assert!(html.contains("at the limit"), "the table says so");
        // One step of the line per sample.
        let path = html
            .split(r#"<path d="M"#)
            .nth(1)
            .and_then(|p| p.split('"').next())
            .expect("the line");
        assert_eq!(path.matches('V').count(), 3, "{path}");
    }
}
