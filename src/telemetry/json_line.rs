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
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use super::request_log::{self, IdText, RequestLine};

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
        // The line is put together in a `String` of this thread's, then handed over in one
        // piece: `Writer` is a `dyn fmt::Write`, and the few dozen small writes of a line each
        // through it were most of what formatting cost (measured with `perf`).
        with_scratch(|line| {
            write_line(line, ctx, event)?;
            writer.write_str(line)
        })
    }
}

/// Runs `f` with this thread's scratch `String`, emptied (a fresh one if it is in use: an event
/// formatted while formatting another, from a `Debug` that logs).
pub(super) fn with_scratch(f: impl FnOnce(&mut String) -> fmt::Result) -> fmt::Result {
    thread_local! {
        static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => {
            scratch.clear();
            f(&mut scratch)
        }
        Err(_) => f(&mut String::new()),
    })
}

/// One event as a JSON object and a newline.
fn write_line<S>(
    line: &mut String,
    ctx: &FmtContext<'_, S, JsonFields>,
    event: &Event<'_>,
) -> fmt::Result
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let meta = event.metadata();
    line.push_str("{\"timestamp\":\"");
    write_now(line)?;
    line.push_str("\",\"level\":\"");
    line.push_str(meta.level().as_str());
    line.push('"');
    let mut fields = FieldWriter::new(line, true);
    event.record(&mut fields);
    fields.result?;
    line.push_str(",\"target\":");
    write_json_str(line, meta.target())?;
    let span = event
        .parent()
        .and_then(|id| ctx.span(id))
        .or_else(|| ctx.lookup_current());
    // A request's id without a span of its own (`request_log`) is written as its span would be,
    // and also inside any span the handler opened (whose fields would otherwise hide it).
    if let Some(span) = span {
        line.push_str(",\"span\":{");
        if let Some(written) = request_log::with_current_id(|id| write_request_id(line, id)) {
            written?;
            line.push(',');
        }
        let extensions = span.extensions();
        if let Some(stored) = extensions.get::<FormattedFields<JsonFields>>()
            && !stored.fields.is_empty()
        {
            line.push_str(&stored.fields);
            line.push(',');
        }
        line.push_str("\"name\":");
        write_json_str(line, span.name())?;
        line.push('}');
    } else if let Some(written) = request_log::with_current_id(|id| {
        line.push_str(",\"span\":{");
        write_request_id(line, id)?;
        line.push_str(",\"name\":\"request\"}");
        Ok(())
    }) {
        written?;
    }
    line.push_str("}\n");
    Ok(())
}

/// `"request_id":"…"`.
fn write_request_id(line: &mut String, id: &str) -> fmt::Result {
    line.push_str("\"request_id\":");
    write_json_str(line, id)
}

/// A request's line, the same as [`JsonLine`] writes for the event
/// `info!(method, route, status, latency_ms, request_id, "request")` logged outside any span,
/// under the target [`request_log::REQUEST_LINE_TARGET`] (a test compares the two).
///
/// The fixed text between the fields, quotes included, is written in one piece each: every
/// piece is a capacity check and a copy, and writing the quotes and the names apart was 26 of
/// them (callgrind: this function's own instructions 369 → 300 per line).
pub(super) fn write_request_line(line: &mut String, request: &RequestLine<'_>) -> fmt::Result {
    line.push_str("{\"timestamp\":\"");
    write_now(line)?;
    line.push_str("\",\"level\":\"INFO\",\"message\":\"request\",\"method\":\"");
    // A token (`http::Method` admits no other): no character of it needs escaping.
    debug_assert!(is_plain(request.method.as_bytes()), "{:?}", request.method);
    line.push_str(request.method);
    line.push_str("\",\"route\":\"");
    if request.route_is_plain {
        debug_assert!(is_plain(request.route.as_bytes()), "{:?}", request.route);
        line.push_str(request.route);
    } else {
        Escaped(&mut *line).write_str(request.route)?;
    }
    line.push_str("\",\"status\":");
    if (100..=999).contains(&request.status) {
        // Every status a response can have: three digits, without `itoa`'s general loop.
        line.push_str(three_digits(request.status.into()));
    } else {
        line.push_str(itoa::Buffer::new().format(request.status));
    }
    line.push_str(",\"latency_ms\":");
    write_millis(line, request.latency.as_micros())?;
    line.push_str(",\"request_id\":\"");
    match request.request_id {
        // Hex digits: plain by construction, and 32 of them cost the check ~190 instructions.
        IdText::Made(_) => line.push_str(request.request_id.as_str()),
        IdText::Caller(_) => Escaped(&mut *line).write_str(request.request_id.as_str())?,
    }
    // The target, `request_log::REQUEST_LINE_TARGET`, as part of the fixed text.
    line.push_str("\",\"target\":\"render_deploy::server::middleware\"}\n");
    Ok(())
}

/// Whether `text` can be written inside a JSON string as it is (no byte of it needs an
/// escape): the request line then skips the check (see [`RequestLine::route_is_plain`]).
pub(crate) fn needs_no_json_escape(text: &str) -> bool {
    is_plain(text.as_bytes())
}

impl<'writer> FormatFields<'writer> for JsonFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        // A new span's `writer` is an empty `String` that would grow (and reallocate) field by
        // field; written in one piece it is allocated once, at its size. Measured on two
        // threads: the reallocations, under the allocator's lock, were most of a span's cost.
        with_scratch(|fragment| {
            let mut visitor = FieldWriter::new(fragment, false);
            fields.record(&mut visitor);
            visitor.result?;
            writer.write_str(fragment)
        })
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
struct FieldWriter<'a, W> {
    writer: &'a mut W,
    /// Whether a comma goes before the next pair.
    comma: bool,
    result: fmt::Result,
}

impl<'a, W: fmt::Write> FieldWriter<'a, W> {
    fn new(writer: &'a mut W, comma: bool) -> Self {
        Self {
            writer,
            comma,
            result: Ok(()),
        }
    }

    /// Writes `,"name":` and then the value with `value`, keeping the first error.
    fn pair(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
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

impl<W: fmt::Write> Visit for FieldWriter<'_, W> {
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

    // Numbers as serde_json writes them (itoa, zmij): without `core::fmt`'s machinery, which
    // was a measurable part of the line.
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.pair(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.pair(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.pair(field, |w| write_f64(w, value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.pair(field, |w| w.write_str(if value { "true" } else { "false" }));
    }
}

/// A number as serde_json writes it; `null` for NaN and infinities, which JSON does not have.
fn write_f64(w: &mut impl fmt::Write, value: f64) -> fmt::Result {
    if value.is_finite() {
        w.write_str(zmij::Buffer::new().format_finite(value))
    } else {
        w.write_str("null")
    }
}

/// `micros` as milliseconds, the text [`write_f64`] gives `micros as f64 / 1000.0` (a test
/// checks), from integer digits: the shortest form of a whole number of thousandths is those
/// digits, so the float's shortest-digits search (`perf`: ~40 ns a line) is not needed.
fn write_millis(w: &mut impl fmt::Write, micros: u128) -> fmt::Result {
    // Up to 15 significant digits a decimal is the shortest text of its float (the floats are
    // closer together than such decimals); beyond that (31 years) the float's own text.
    if micros >= 1_000_000_000_000_000 {
        return write_f64(w, micros as f64 / 1000.0);
    }
    let (whole, thousandths) = ((micros / 1000) as u64, (micros % 1000) as u32);
    w.write_str(itoa::Buffer::new().format(whole))?;
    if thousandths == 0 {
        return w.write_str(".0");
    }
    w.write_char('.')?;
    let digits = three_digits(thousandths);
    w.write_str(digits.trim_end_matches('0'))
}

/// The current time as [`write_timestamp`] writes it, with the date and time of day up to the
/// second kept per thread: they change once a second, and working them out from the clock's
/// seconds (the calendar's arithmetic) was most of what the timestamp cost (`perf`: ~40 ns a
/// line with the clock read).
fn write_now(w: &mut impl fmt::Write) -> fmt::Result {
    thread_local! {
        static SECOND: KeptSecond = const { std::cell::RefCell::new(None) };
    }
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    SECOND.with(|kept| write_kept(w, since_epoch, kept))
}

/// A second since 1970 and its text up to the fraction (`2026-12-01T16:31:39.`), kept as text
/// so that it is written without being checked as UTF-8 again.
type KeptSecond = std::cell::RefCell<Option<(u64, String)>>;

/// `since_epoch` as RFC 3339 with microseconds, reusing `kept`'s text when it is of the same
/// second (and keeping this second's for next time).
fn write_kept(w: &mut impl fmt::Write, since_epoch: Duration, kept: &KeptSecond) -> fmt::Result {
    let seconds = since_epoch.as_secs();
    // Borrowed only here, by this thread, never across a call that could log.
    let Ok(mut kept) = kept.try_borrow_mut() else {
        return write_timestamp(w, time::OffsetDateTime::UNIX_EPOCH + since_epoch);
    };
    match &*kept {
        Some((second, _)) if *second == seconds => {}
        _ => {
            // Seconds since 1970 (a clock set before then reads as 1970); past the year 9999,
            // which the `time` crate does not represent, the last moment it does.
            let Some(at) = i64::try_from(seconds)
                .ok()
                .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
            else {
                return w.write_str("9999-12-31T23:59:59.999999Z");
            };
            let mut text = String::with_capacity(27);
            write_timestamp(&mut text, at)?;
            text.truncate(20);
            *kept = Some((seconds, text));
        }
    }
    let prefix = kept.as_ref().map_or("", |(_, prefix)| prefix.as_str());
    let micros = since_epoch.subsec_micros();
    w.write_str(prefix)?;
    w.write_str(three_digits(micros / 1000))?;
    w.write_str(three_digits(micros % 1000))?;
    w.write_char('Z')
}

/// `2026-12-01T16:31:39.123456Z`: RFC 3339 in UTC with microseconds, the form
/// tracing-subscriber's `SystemTime` writes, from digits rather than `core::fmt`.
fn write_timestamp(w: &mut impl fmt::Write, now: time::OffsetDateTime) -> fmt::Result {
    let year = now.year();
    let (hour, minute, second, micro) = now.to_hms_micro();
    if !(0..=9999).contains(&year) {
        // Not four digits (a clock far off): the general, slower form.
        let (month, day) = (u8::from(now.month()), now.day());
        return write!(
            w,
            "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{micro:06}Z"
        );
    }
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    put_digits(&mut text[0..4], year.unsigned_abs());
    put_digits(&mut text[5..7], u8::from(now.month()).into());
    put_digits(&mut text[8..10], now.day().into());
    put_digits(&mut text[11..13], hour.into());
    put_digits(&mut text[14..16], minute.into());
    put_digits(&mut text[17..19], second.into());
    put_digits(&mut text[20..26], micro);
    w.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
}

/// `"000"` to `"999"` one after another, made and checked as UTF-8 at compile time, so that a
/// number below 1000 is written as a slice of it: `put_digits` and then `str::from_utf8` on
/// the digits (the status, the timestamp, the latency) cost ~210 instructions per request line
/// (callgrind).
const DIGITS: &str = {
    const BYTES: [u8; 3000] = {
        let mut bytes = [0u8; 3000];
        let mut n = 0;
        while n < 1000 {
            bytes[3 * n] = b'0' + (n / 100) as u8;
            bytes[3 * n + 1] = b'0' + (n / 10 % 10) as u8;
            bytes[3 * n + 2] = b'0' + (n % 10) as u8;
            n += 1;
        }
        bytes
    };
    match std::str::from_utf8(&BYTES) {
        Ok(digits) => digits,
        Err(_) => panic!("ASCII digits are UTF-8"),
    }
};

/// `value`'s last three decimal digits, zero-padded.
fn three_digits(value: u32) -> &'static str {
    let at = 3 * (value % 1000) as usize;
    &DIGITS[at..at + 3]
}

/// Writes `value`'s last `out.len()` decimal digits into `out`, zero-padded.
fn put_digits(out: &mut [u8], mut value: u32) {
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
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
        // Most text (field names, routes, ids) needs no escape: one check, one write.
        if is_plain(s.as_bytes()) {
            return self.0.write_str(s);
        }
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

/// Whether a byte cannot stand for itself inside a JSON string (or is DEL, escaped as well).
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f
}

/// Whether no byte of `text` [`needs_escape`]. It looks at every byte rather than stopping at
/// the first that needs an escape, so that the compiler checks them many at a time (`any`
/// stopped at each byte: `perf` put the escaping at 80 ns per request line). A check of eight
/// bytes at a time in a `u64`, tried, counted the same instructions per line on these short
/// strings (callgrind): what saved was not checking the text that cannot need an escape.
fn is_plain(text: &[u8]) -> bool {
    !text.iter().fold(false, |found, &b| found | needs_escape(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timestamp_is_rfc_3339_with_microseconds_as_before() {
        use time::macros::datetime;
        let mut out = String::new();
        write_timestamp(&mut out, datetime!(2026-03-04 05:06:07.000089 UTC)).unwrap();
        assert_eq!(out, "2026-03-04T05:06:07.000089Z");
        out.clear();
        write_timestamp(&mut out, datetime!(0999-12-31 23:59:59.999999 UTC)).unwrap();
        assert_eq!(out, "0999-12-31T23:59:59.999999Z");
        // Agrees with tracing-subscriber's own clock format (which it replaces) to the second.
        let now = time::OffsetDateTime::now_utc();
        out.clear();
        write_timestamp(&mut out, now).unwrap();
        let parsed =
            time::OffsetDateTime::parse(&out, &time::format_description::well_known::Rfc3339)
                .unwrap();
        assert_eq!(
            parsed,
            now.replace_nanosecond(now.microsecond() * 1000).unwrap()
        );
    }

    #[test]
    fn no_method_that_http_admits_needs_an_escape() {
        // The request line writes the method without the escape check.
        for b in 0..=255u8 {
            if let Ok(method) = axum::http::Method::from_bytes(&[b'X', b, b'Y']) {
                assert!(is_plain(method.as_str().as_bytes()), "{b:#x}");
            }
        }
        assert!(is_plain(module_path!().as_bytes()));
    }

    #[test]
    fn the_kept_second_gives_the_text_of_every_moment_across_seconds_and_days() {
        let kept = KeptSecond::new(None);
        // A second before a month's end (2026-02-28), a leap day's (2028-02-28 into the 29th)
        // and a year's (2026-12-31), in steps of a quarter second and a microsecond, the kept
        // text carried from each moment to the next.
        for start in [1_772_323_199u64, 1_835_395_199, 1_798_761_599] {
            for micros in (0..3_000_000u64).step_by(250_001) {
                let since_epoch = Duration::from_secs(start) + Duration::from_micros(micros);
                let mut direct = String::new();
                write_kept(&mut direct, since_epoch, &kept).unwrap();
                let mut general = String::new();
                write_timestamp(&mut general, time::OffsetDateTime::UNIX_EPOCH + since_epoch)
                    .unwrap();
                assert_eq!(direct, general);
            }
        }
        // A clock beyond what four digits write gives their last moment, not a panic.
        let mut far = String::new();
        write_kept(&mut far, Duration::from_secs(u64::MAX), &kept).unwrap();
        assert_eq!(far, "9999-12-31T23:59:59.999999Z");
    }

    /// What a subscriber with [`JsonLine`] writes for the events `log` makes.
    fn formatted(log: impl FnOnce()) -> String {
        use std::sync::{Arc, Mutex};
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&out);
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(JsonFields)
            .event_format(JsonLine)
            .with_writer(move || Sink(Arc::clone(&sink)))
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let bytes = out.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The line without its timestamp (`{"timestamp":"…",` is 42 bytes).
    fn untimed(line: &str) -> &str {
        assert!(line.starts_with("{\"timestamp\":\""), "{line}");
        &line[42..]
    }

    #[test]
    fn the_request_line_written_directly_is_the_events_line_byte_for_byte() {
        for (method, route, status, micros, id) in [
            ("GET", "/livez", 200, 52, "d8a7af8672548d1e168f523cd02071c9"),
            (
                "POST",
                "/hooks/deploy",
                401,
                70_000,
                "caller's \"id\" \\ here",
            ),
            ("DELETE", "unmatched", 405, 0, "x"),
            ("GET", "/odd\"route\\", 200, 1, "y"),
            ("GET", "/", 503, 12_345_678, "id"),
        ] {
            let id_text = match <[u8; 32]>::try_from(id.as_bytes()) {
                Ok(digits) if id.bytes().all(|b| b.is_ascii_hexdigit()) => IdText::Made(digits),
                _ => IdText::Caller(axum::http::HeaderValue::from_str(id).unwrap()),
            };
            let request = RequestLine {
                method,
                route,
                route_is_plain: is_plain(route.as_bytes()),
                status,
                latency: std::time::Duration::from_micros(micros),
                request_id: &id_text,
            };
            let mut direct = String::new();
            write_request_line(&mut direct, &request).unwrap();
            let event = formatted(|| {
                tracing::info!(
                    target: request_log::REQUEST_LINE_TARGET,
                    method,
                    route,
                    status,
                    latency_ms = request.latency_ms(),
                    request_id = id,
                    "request"
                )
            });
            assert_eq!(untimed(&direct), untimed(&event));
            let parsed: serde_json::Value = serde_json::from_str(&direct).unwrap();
            assert_eq!(parsed["request_id"], id);
        }
    }

    #[test]
    fn inside_a_request_scope_events_carry_its_id_as_the_request_span_would() {
        use futures_util::FutureExt;
        use tracing::Span;
        let id = request_log::IdText::Caller(axum::http::HeaderValue::from_static("req-7"));
        // The per-thread slot, as the middleware uses it when our JSON subscriber reads it alone.
        let local = formatted(|| {
            let mut scope = request_log::RequestScope::Local(Some(id.clone()));
            scope.in_scope(|| tracing::warn!("made"));
            scope
                .wrap(async {
                    tracing::warn!(n = 1, "polled");
                    tracing::info_span!("inner", step = "two")
                        .in_scope(|| tracing::warn!("nested"));
                })
                .now_or_never()
                .unwrap();
            tracing::warn!("after");
        });
        // The span, as with any other subscriber.
        let spanned = formatted(|| {
            let span: Span = tracing::info_span!("request", request_id = "req-7");
            span.in_scope(|| tracing::warn!("made"));
            span.in_scope(|| tracing::warn!(n = 1, "polled"));
        });
        let lines: Vec<&str> = local.lines().map(untimed).collect();
        assert_eq!(lines.len(), 4, "{local}");
        let span_lines: Vec<&str> = spanned.lines().map(untimed).collect();
        assert_eq!(lines[..2], span_lines[..], "the two ways agree");
        assert!(
            lines[1].ends_with(r#""span":{"request_id":"req-7","name":"request"}}"#),
            "{}",
            lines[1]
        );
        // Inside a span the handler opens, the id is kept beside that span's fields.
        assert!(
            lines[2].ends_with(r#""span":{"request_id":"req-7","step":"two","name":"inner"}}"#),
            "{}",
            lines[2]
        );
        assert!(
            !lines[3].contains("span"),
            "outside the scope: {}",
            lines[3]
        );
    }

    #[test]
    fn latencies_from_whole_microseconds_are_the_floats_text() {
        let edges = [
            999_999_999,
            1 << 40,
            999_999_999_999_999,
            10u128.pow(15),
            1 << 53,
            u64::MAX.into(),
        ];
        for micros in (0..200_000u128)
            .chain((0..2000).map(|i| i * 12_345_677))
            .chain(edges)
        {
            let (mut direct, mut float) = (String::new(), String::new());
            write_millis(&mut direct, micros).unwrap();
            write_f64(&mut float, micros as f64 / 1000.0).unwrap();
            assert_eq!(direct, float, "{micros} µs");
        }
    }

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
