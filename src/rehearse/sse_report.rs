//! The event streams of `rehearse --sse` in both reports: what failed, one line per stream in
//! the text, and in the HTML page one lane per client with each stream as a bar that ends clean
//! or broken, and the reconnect gaps between them.

use std::fmt::Write as _;
use std::time::Duration;

use super::html::draw::{Axis, FAILED, LEFT, axis_frame, colour, esc, marker, svg_open};
use super::report::{Rehearsal, secs};
use super::sse::{StreamEnd, StreamRecord, Streams};

const CLEAN: &str = "#2e7d32";
const OPEN: &str = "#999";

impl Streams {
    /// Why the streams fail the rehearsal (broken streams, failed reconnects); empty when
    /// every stream that ended did so cleanly.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let broken: Vec<&StreamRecord> = self
            .records
            .iter()
            .filter(|s| s.ending.is_broken())
            .collect();
        if !broken.is_empty() {
            let names: Vec<String> = broken
                .iter()
                .map(|s| format!("{} ({})", name(s), s.ending.describe()))
                .collect();
            problems.push(format!(
                "{} of {} event streams on {} broken: {}",
                broken.len(),
                self.records.len(),
                self.path,
                names.join(", ")
            ));
        }
        let failed: Vec<&StreamRecord> = self
            .records
            .iter()
            .filter(|s| matches!(s.ending, StreamEnd::NotOpened(_)))
            .collect();
        if !failed.is_empty() {
            let first = failed[0];
            problems.push(format!(
                "{} event stream (re)connects on {} failed, the first at {} ({})",
                failed.len(),
                self.path,
                secs(first.end),
                first.ending.describe()
            ));
        }
        if self.records.is_empty() {
            problems.push(format!("no event stream was opened on {}", self.path));
        }
        problems
    }

    /// The section of the text report.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let count =
            |f: fn(&StreamEnd) -> bool| self.records.iter().filter(|s| f(&s.ending)).count();
        let _ = writeln!(
            out,
            "event streams on {}: {} client{}, {} streams: {} clean, {} broken, {} failed to open, {} open at the end",
            self.path,
            self.clients,
            if self.clients == 1 { "" } else { "s" },
            self.records.len(),
            count(|e| *e == StreamEnd::Clean),
            count(StreamEnd::is_broken),
            count(|e| matches!(e, StreamEnd::NotOpened(_))),
            count(|e| *e == StreamEnd::OpenAtEnd),
        );
        let mut previous: Option<&StreamRecord> = None;
        for s in &self.records {
            let gap = previous
                .filter(|p| p.client == s.client)
                .map(|p| {
                    format!(
                        ", reconnected {} after",
                        secs(s.start.saturating_sub(p.end))
                    )
                })
                .unwrap_or_default();
            let last = s
                .last_event
                .as_deref()
                .map(|e| format!(", last `{e}`"))
                .unwrap_or_default();
            let sent_id = s
                .last_event_id
                .as_deref()
                .map(|id| format!(" with Last-Event-ID {id}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {:<14} {:<8} {} to {}{gap}{sent_id}: {} event{}{last}: {}",
                name(s),
                s.instance.as_deref().unwrap_or("-"),
                secs(s.start),
                secs(s.end),
                s.events,
                if s.events == 1 { "" } else { "s" },
                s.ending.describe()
            );
            previous = Some(s);
        }
        out
    }
}

/// `client 2 #3`: the third stream of the second client.
fn name(s: &StreamRecord) -> String {
    format!("client {} #{}", s.client, s.attempt)
}

/// The HTML section: one lane per client, each stream a bar in the colour of its instance,
/// ended by a mark that says how it ended; the gaps between bars are the reconnect delays.
pub(super) fn html_section(out: &mut String, r: &Rehearsal, streams: &Streams, x: &Axis) {
    let _ = write!(
        out,
        "<h2>Event streams on <code>{}</code>, by client</h2><p class=\"muted\">Each bar is one stream, in the colour of the instance that served it; it ends in <b style=\"color:{CLEAN}\">green</b> when the server closed it after a complete event, in <b style=\"color:{FAILED}\">red</b> when it broke (reset, timed out, cut inside an event) or could not be opened, in grey when it was open at the end. The gaps between bars are the reconnect delays.</p>",
        esc(&streams.path)
    );
    let lane = 26.0;
    let top = 6.0;
    let bottom = top + lane * streams.clients.max(1) as f64;
    svg_open(out, bottom + 22.0);
    x.ticks(out, top, bottom);
    for client in 1..=streams.clients {
        let y0 = top + (client - 1) as f64 * lane + 5.0;
        let h = lane - 10.0;
        let _ = write!(
            out,
            r#"<text x="{}" y="{:.1}" text-anchor="end">client {client}</text>"#,
            LEFT - 6.0,
            y0 + h / 2.0 + 4.0
        );
        let mine: Vec<&StreamRecord> = streams
            .records
            .iter()
            .filter(|s| s.client == client)
            .collect();
        for (n, s) in mine.iter().enumerate() {
            stream_bar(out, r, s, x, y0, h);
            if let Some(next) = mine.get(n + 1) {
                gap(out, s.end, next.start, x, y0 + h / 2.0);
            }
        }
    }
    axis_frame(out, top, bottom);
    out.push_str("</svg>");
}

fn stream_bar(out: &mut String, r: &Rehearsal, s: &StreamRecord, x: &Axis, y0: f64, h: f64) {
    let tip = format!(
        "{} on {}: {} to {}, {} events: {}",
        name(s),
        s.instance.as_deref().unwrap_or("no instance"),
        secs(s.start),
        secs(s.end),
        s.events,
        s.ending.describe()
    );
    let fill = s.instance.as_deref().map_or(OPEN, |i| colour(r, i));
    let from = s.opened.unwrap_or(s.start);
    if s.opened.is_some() {
        let _ = write!(
            out,
            r#"<rect x="{:.1}" y="{y0:.1}" width="{:.1}" height="{h}" fill="{fill}" opacity="0.8"><title>{}</title></rect>"#,
            x.px(from),
            (x.px(s.end) - x.px(from)).max(1.0),
            esc(&tip)
        );
    }
    let end_colour = match s.ending {
        StreamEnd::Clean => CLEAN,
        StreamEnd::OpenAtEnd => OPEN,
        _ => FAILED,
    };
    marker(out, x.px(s.end), y0, h, end_colour, &esc(&tip));
    if s.ending.is_failure() {
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" style="fill:{FAILED};font-weight:600">{}</text>"#,
            x.px(s.end) + 4.0,
            y0 - 1.0,
            if s.ending.is_broken() {
                "broken"
            } else {
                "failed"
            }
        );
    }
}

fn gap(out: &mut String, from: Duration, to: Duration, x: &Axis, y: f64) {
    if to <= from {
        return;
    }
    let _ = write!(
        out,
        r##"<line x1="{:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#888" stroke-dasharray="2 2"><title>reconnect after {}</title></line>"##,
        x.px(from),
        x.px(to),
        secs(to - from)
    );
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rehearse::record::FailureCause;
    use crate::rehearse::sse::OpenFailure;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn stream(
        client: usize,
        attempt: usize,
        span: (u64, u64),
        on: &str,
        ending: StreamEnd,
    ) -> StreamRecord {
        StreamRecord {
            client,
            attempt,
            start: ms(span.0),
            opened: (!matches!(ending, StreamEnd::NotOpened(_))).then(|| ms(span.0 + 2)),
            end: ms(span.1),
            instance: Some(on.to_owned()),
            events: 2,
            last_event: Some("draining".to_owned()),
            last_event_id: None,
            ending,
        }
    }

    pub(crate) fn clean() -> Streams {
        Streams {
            path: "/events".into(),
            clients: 1,
            records: vec![
                stream(1, 1, (100, 2100), "old-1", StreamEnd::Clean),
                stream(1, 2, (3100, 4000), "new-1", StreamEnd::OpenAtEnd),
            ],
        }
    }

    #[test]
    fn clean_streams_and_streams_open_at_the_end_are_no_problem() {
        let s = clean();
        assert!(s.problems().is_empty(), "{:?}", s.problems());
        let text = s.text();
        assert!(
            text.contains("2 streams: 1 clean, 0 broken, 0 failed to open, 1 open at the end"),
            "{text}"
        );
        assert!(
            text.contains("client 1 #2    new-1    3.100 s to 4.000 s, reconnected 1.000 s after:"),
            "{text}"
        );
    }

    #[test]
    fn broken_streams_are_named_and_failed_reconnects_counted() {
        let s = Streams {
            path: "/events".into(),
            clients: 2,
            records: vec![
                stream(1, 1, (100, 2100), "old-1", StreamEnd::Reset),
                stream(
                    1,
                    2,
                    (3100, 3105),
                    "old-1",
                    StreamEnd::NotOpened(OpenFailure::Cause(FailureCause::ConnectRefused)),
                ),
                stream(2, 1, (100, 2100), "old-1", StreamEnd::CutInsideEvent),
            ],
        };
        let problems = s.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0]
                .starts_with("2 of 3 event streams on /events broken: client 1 #1 (broken: reset"),
            "{problems:?}"
        );
        assert!(
            problems[0].contains("client 2 #1 (broken: cut inside an event)"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("1 event stream (re)connects on /events failed"),
            "{problems:?}"
        );
    }

    #[test]
    fn the_page_draws_each_stream_its_end_and_the_reconnect_gap() {
        let mut r = crate::rehearse::report::tests::sample();
        let mut streams = clean();
        streams
            .records
            .push(stream(1, 3, (4100, 4150), "new-1", StreamEnd::Reset));
        r.streams = Some(streams);
        let page = crate::rehearse::html::page(&r);
        assert!(page.contains("Event streams on <code>/events</code>"));
        assert!(page.contains("client 1 #1 on old-1: 0.100 s to 2.100 s, 2 events: clean"));
        assert!(page.contains("<title>reconnect after 1.000 s</title>"));
        assert!(page.contains(">broken</text>"));
        assert!(
            page.contains("event streams on /events broken: client 1 #3"),
            "the problem is listed"
        );
    }
}
