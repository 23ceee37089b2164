//! The JSON log line: one object per event, written straight into the line buffer.
//!
//! tracing-subscriber's own JSON formatter collects an event's fields into a `BTreeMap` of
//! `serde_json::Value`s (a `format!` per `Debug` field), and for the current span parses the
//! span's stored JSON back into values on every event: on the request path that was most of
//! what the one log line per request cost. This formatter writes each field as it is visited,
//! escaping on the fly, and copies the span's fields (stored once, as a JSON fragment, when the
//! span is created) verbatim. The shape is the one the crate's formatter gave with
//! `flatten_event(true)` and `with_current_span(true)`:
//!
//! ```text
//! {"timestamp":"2026-12-01T16:31:39.123456Z","level":"INFO","message":"request","status":200,…,"target":"render_deploy::server::middleware","span":{"request_id":"…","name":"request"}}
//! ```

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats an event as one JSON object per line.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonLine;

/// Formats a span's fields as a JSON fragment (`"a":1,"b":"x"`), stored once per span.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonFields;

impl<S> FormatEvent<S, JsonFields> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        SystemTime.format_time(&mut writer)?;
        write!(writer, "\",\"level\":\"{}\"", meta.level())?;
        let mut fields = FieldWriter::new(&mut writer, true);
        event.record(&mut fields);
        fields.result?;
        writer.write_str(",\"target\":")?;
        write_json_str(&mut writer, meta.target())?;
        let span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        if let Some(span) = span {
            writer.write_str(",\"span\":{")?;
            let extensions = span.extensions();
            if let Some(stored) = extensions.get::<FormattedFields<JsonFields>>()
                && !stored.fields.is_empty()
            {
                writer.write_str(&stored.fields)?;
                writer.write_char(',')?;
            }
            writer.write_str("\"name\":")?;
            write_json_str(&mut writer, span.name())?;
            writer.write_char('}')?;
        }
        writer.write_str("}\n")
    }
}

impl<'writer> FormatFields<'writer> for JsonFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut visitor = FieldWriter::new(&mut writer, false);
        fields.record(&mut visitor);
        visitor.result
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        // Fields recorded later (`span.record`) are appended to the fragment.
        let had_fields = !current.fields.is_empty();
        let mut writer = current.as_writer();
        let mut visitor = FieldWriter::new(&mut writer, had_fields);
        fields.record(&mut visitor);
        visitor.result
    }
}

/// Writes visited fields as `"name":value` pairs separated by commas.
struct FieldWriter<'a, 'w> {
    writer: &'a mut Writer<'w>,
    /// Whether a comma goes before the next pair.
    comma: bool,
    result: fmt::Result,
}

impl<'a, 'w> FieldWriter<'a, 'w> {
    fn new(writer: &'a mut Writer<'w>, comma: bool) -> Self {
        Self {
            writer,
            comma,
            result: Ok(()),
        }
    }

    /// Writes `,"name":` and then the value with `value`, keeping the first error.
    fn pair(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'w>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        // Raw identifiers (`r#type`) are named without their prefix, as tracing-subscriber does.
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.result = (|| {
            if self.comma {
                self.writer.write_char(',')?;
            }
            write_json_str(self.writer, name)?;
            self.writer.write_char(':')?;
            value(self.writer)
        })();
        self.comma = true;
    }
}

impl Visit for FieldWriter<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.pair(field, |w| write_json_str(w, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%value` fields arrive here too (their `Debug` is the value's `Display`).
        self.pair(field, |w| {
            w.write_char('"')?;
            write!(Escaped(&mut *w), "{value:?}")?;
            w.write_char('"')
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.pair(field, |w| write!(w, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.pair(field, |w| write!(w, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity; `null` is what serde_json writes for them.
        self.pair(field, |w| {
            if value.is_finite() {
                write!(w, "{value}")
            } else {
                w.write_str("null")
            }
        });
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.pair(field, |w| w.write_str(if value { "true" } else { "false" }));
    }
}

/// A JSON string with its quotes.
fn write_json_str(w: &mut impl fmt::Write, s: &str) -> fmt::Result {
    w.write_char('"')?;
    Escaped(&mut *w).write_str(s)?;
    w.write_char('"')
}

/// Escapes what passes through it for the inside of a JSON string; runs of plain characters are
/// passed on in one piece.
struct Escaped<W>(W);

impl<W: fmt::Write> fmt::Write for Escaped<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, b) in s.bytes().enumerate() {
            let escape = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f | 0x7f => "",
                _ => continue,
            };
            self.0.write_str(&s[plain..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = i + 1;
        }
        self.0.write_str(&s[plain..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = String::new();
        write_json_str(&mut out, s).unwrap();
        out
    }

    #[test]
    fn every_string_comes_out_as_the_json_that_serde_json_reads_back() {
        for s in [
            "",
            "plain",
            "quote \" and backslash \\",
            "lines\nand\r\ttabs",
            "\u{0}\u{1f}\u{7f} controls",
            "unicode: é ✓ 🚀",
            "\"\"",
        ] {
            let json = escaped(s);
            let back: String =
                serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(back, s, "{json}");
        }
    }
}
