//! The drawing parts that every chart of the page shares: the page's width and margins, the
//! time axis, the frame and grid of a chart, an instance's colour, a marker line, and escaping
//! text for HTML. Both the page (`html`) and its event-stream chart (`sse_report`) draw with
//! them, so they stand below both.

use std::fmt::Write as _;
use std::time::Duration;

use super::super::record::Role;
use super::super::report::{Rehearsal, trim_float};

pub(in crate::rehearse) const WIDTH: f64 = 1100.0;
pub(in crate::rehearse) const LEFT: f64 = 64.0;
/// Room on the right for the lanes' verdicts ("never healthy, killed by SIGTERM").
pub(in crate::rehearse) const RIGHT: f64 = 170.0;
pub(in crate::rehearse) const FAILED: &str = "#d62728";
const OLD_COLOURS: [&str; 4] = ["#4e79a7", "#7fa7d4", "#2f4b7c", "#a0cbe8"];
const NEW_COLOURS: [&str; 4] = ["#59a14f", "#8cd17d", "#2e7d32", "#b6e3a8"];

/// Maps seconds to the horizontal pixel position.
pub(in crate::rehearse) struct Axis {
    /// The seconds the axis spans.
    pub(in crate::rehearse) span: f64,
}

impl Axis {
    pub(in crate::rehearse) fn px(&self, d: Duration) -> f64 {
        LEFT + d.as_secs_f64() / self.span * (WIDTH - LEFT - RIGHT)
    }

    /// Vertical grid lines and labels every "nice" number of seconds.
    pub(in crate::rehearse) fn ticks(&self, out: &mut String, top: f64, bottom: f64) {
        let step = nice_step(self.span / 10.0);
        let mut t = 0.0;
        while t <= self.span + 1e-9 {
            let px = self.px(Duration::from_secs_f64(t));
            let _ = write!(
                out,
                r##"<line x1="{px:.1}" x2="{px:.1}" y1="{top}" y2="{bottom}" stroke="#eee"/><text x="{px:.1}" y="{}" text-anchor="middle">{} s</text>"##,
                bottom + 14.0,
                trim_float(t)
            );
            t += step;
        }
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
pub(in crate::rehearse) fn nice_step(raw: f64) -> f64 {
    if raw.is_nan() || raw <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * magnitude >= raw {
            return m * magnitude;
        }
    }
    10.0 * magnitude
}

pub(in crate::rehearse) fn colour(r: &Rehearsal, name: &str) -> &'static str {
    let Some(i) = r.instances.iter().find(|i| i.name == name) else {
        return "#999";
    };
    let palette = match i.role {
        Role::Old => &OLD_COLOURS,
        Role::New => &NEW_COLOURS,
    };
    palette[(i.step - 1) % palette.len()]
}

pub(in crate::rehearse) fn marker(
    out: &mut String,
    px: f64,
    y0: f64,
    h: f64,
    colour: &str,
    tip: &str,
) {
    let _ = write!(
        out,
        r#"<line x1="{px:.1}" x2="{px:.1}" y1="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="2"><title>{tip}</title></line>"#,
        y0 - 3.0,
        y0 + h + 3.0
    );
}

pub(in crate::rehearse) fn svg_open(out: &mut String, height: f64) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img">"#
    );
}

pub(in crate::rehearse) fn axis_frame(out: &mut String, top: f64, bottom: f64) {
    let _ = write!(
        out,
        r##"<line x1="{LEFT}" x2="{LEFT}" y1="{top}" y2="{bottom}" stroke="#888"/><line x1="{LEFT}" x2="{}" y1="{bottom}" y2="{bottom}" stroke="#888"/>"##,
        WIDTH - RIGHT
    );
}

/// Escapes text for HTML content and attribute values.
pub(in crate::rehearse) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The horizontal grid lines, their values and the axis label of a chart.
pub(in crate::rehearse) fn y_axis(
    out: &mut String,
    y_max: f64,
    y_step: f64,
    y: &dyn Fn(f64) -> f64,
    (top, bottom): (f64, f64),
    label: &str,
) {
    let mut v = 0.0;
    while v <= y_max + 1e-9 {
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#e6e6e6"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y(v) + 4.0,
            trim_float(v),
            py = y(v)
        );
        v += y_step;
    }
    let _ = write!(
        out,
        r#"<text x="12" y="{}" transform="rotate(-90 12 {})" text-anchor="middle">{label}</text>"#,
        (top + bottom) / 2.0,
        (top + bottom) / 2.0
    );
}
