//! The YAML reader of the Blueprint checker: a tree whose every key and value knows its line and column.
//!
//! Built on `saphyr-parser`'s event stream (a maintained YAML 1.2 parser that reports a span for every
//! event) rather than on a serde loader, because the checker must point at the exact key or value it
//! complains about, see duplicate keys (which serde loaders silently collapse), and stay in control of
//! the resources an input may use: nesting depth, alias expansion and file size are all bounded here,
//! so no input can overflow the stack or exhaust memory.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// The largest file the checker reads. Render's own Blueprints are a few kilobytes; anything near a
/// megabyte is a mistake (a generated file, a binary), and refusing it keeps the checker's memory bounded.
pub const MAX_BYTES: usize = 1024 * 1024;
/// Deepest nesting accepted. A Blueprint needs about 8 levels; the bound keeps recursive walks safe.
pub(crate) const MAX_DEPTH: usize = 64;
/// Most values that aliases may copy in all ("billion laughs" protection). Values written out are
/// already bounded by [`MAX_BYTES`]; only aliases can multiply them.
pub(crate) const MAX_ALIAS_NODES: usize = 100_000;

/// A position in the file, both 1-based, columns counted in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

impl Pos {
    /// The start of the file.
    pub(crate) const START: Pos = Pos { line: 1, column: 1 };

    fn of(span: &Span) -> Pos {
        Pos {
            line: span.start.line().max(1),
            column: span.start.col() + 1,
        }
    }
}

/// A scalar resolved with YAML 1.2's core schema (what `true`, `42` or `~` mean when unquoted).
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// `~`, `null` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer that fits in an `i64`.
    Int(i64),
    /// Any other number.
    Float(f64),
    /// Everything else, and every quoted or block scalar.
    Str(String),
}

/// What a node holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A scalar, with the text as written (for messages) and its resolved value.
    Scalar(String, Scalar),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order, without duplicate keys (the first occurrence wins).
    Map(Vec<Entry>),
}

/// A value with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the value starts.
    pub pos: Pos,
    /// The value.
    pub kind: Kind,
}

/// One `key: value` of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key's text.
    pub key: String,
    /// Where the key starts.
    pub key_pos: Pos,
    /// The value.
    pub value: Node,
}

/// A problem that stops reading the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    /// Where.
    pub pos: Pos,
    /// What, in words.
    pub message: String,
}

/// A parsed document and the problems that did not stop reading it (duplicate keys).
#[derive(Debug)]
pub struct Document {
    /// The root node.
    pub root: Node,
    /// Non-fatal problems, each an error.
    pub problems: Vec<YamlError>,
}

impl Node {
    /// The entries when this is a mapping.
    pub(crate) fn as_map(&self) -> Option<&[Entry]> {
        match &self.kind {
            Kind::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The items when this is a sequence.
    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            Kind::Seq(items) => Some(items),
            _ => None,
        }
    }

    /// The value of `key` when this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.value)
    }

    /// The entry of `key` when this is a mapping that has it.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.as_map()?.iter().find(|e| e.key == key)
    }

    /// The text of a string scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar(_, Scalar::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// The scalar's text as written, for any scalar (a number or a boolean too).
    pub fn text(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar(text, _) => Some(text),
            _ => None,
        }
    }

    /// The value of an integer scalar.
    pub(crate) fn as_int(&self) -> Option<i64> {
        match &self.kind {
            Kind::Scalar(_, Scalar::Int(i)) => Some(*i),
            _ => None,
        }
    }

    /// The value of a boolean scalar.
    pub(crate) fn as_bool(&self) -> Option<bool> {
        match &self.kind {
            Kind::Scalar(_, Scalar::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// A short description of the node's type, for messages ("a mapping", "the number 3").
    pub(crate) fn describe(&self) -> String {
        match &self.kind {
            Kind::Map(_) => "a mapping".into(),
            Kind::Seq(_) => "a list".into(),
            Kind::Scalar(_, Scalar::Null) => "nothing (null)".into(),
            Kind::Scalar(t, Scalar::Bool(_)) => format!("the boolean `{t}`"),
            Kind::Scalar(t, Scalar::Int(_) | Scalar::Float(_)) => format!("the number `{t}`"),
            Kind::Scalar(t, Scalar::Str(_)) => format!("the string `{}`", shorten(t)),
        }
    }

    /// The node as JSON, as a YAML loader would see it (for JSON Schema validators and tools).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            Kind::Scalar(_, Scalar::Null) => Value::Null,
            Kind::Scalar(_, Scalar::Bool(b)) => Value::Bool(*b),
            Kind::Scalar(_, Scalar::Int(i)) => Value::from(*i),
            Kind::Scalar(_, Scalar::Float(f)) => {
                serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
            }
            Kind::Scalar(_, Scalar::Str(s)) => Value::String(s.clone()),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
        }
    }

    /// How many nodes this tree holds (itself included).
    fn size(&self) -> usize {
        match &self.kind {
            Kind::Scalar(..) => 1,
            Kind::Seq(items) => 1 + items.iter().map(Node::size).sum::<usize>(),
            Kind::Map(entries) => 1 + entries.iter().map(|e| 1 + e.value.size()).sum::<usize>(),
        }
    }
}

/// Shortens a value quoted in a message so that a huge value cannot flood the output.
pub(crate) fn shorten(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<Entry>,
        key: Option<(String, Pos)>,
        seen: HashMap<String, Pos>,
    },
}

/// Reads one YAML document into a positioned tree, within the limits above.
pub fn parse(source: &str) -> Result<Document, YamlError> {
    if source.len() > MAX_BYTES {
        return Err(YamlError {
            pos: Pos::START,
            message: too_large(source.len()),
        });
    }
    Builder::default().run(source)
}

/// The message for a file over [`MAX_BYTES`].
pub(crate) fn too_large(len: usize) -> String {
    format!(
        "the file is {len} bytes; a Blueprint may be at most {MAX_BYTES} bytes (1 MiB), so it was not read"
    )
}

/// A scanner error in words a Blueprint author can act on.
fn syntax_error(source: &str, e: &saphyr_parser::ScanError) -> YamlError {
    let pos = Pos {
        line: e.marker().line().max(1),
        column: e.marker().col() + 1,
    };
    let info = e.info();
    if info.contains("recursion limit") {
        // The scanner bounds flow nesting itself; say it the way the builder does.
        return YamlError {
            pos,
            message: too_deep(),
        };
    }
    if info.contains("tab") {
        // The scanner notices a tab only after the line before it; point at the tab itself.
        let tab = source.lines().enumerate().find_map(|(i, line)| {
            let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
            line[..indent].find('\t').map(|col| Pos {
                line: i + 1,
                column: col + 1,
            })
        });
        return YamlError {
            pos: tab.unwrap_or(pos),
            message: "YAML syntax error: a tab in the indentation; YAML indents with spaces only"
                .into(),
        };
    }
    let hint = if info.contains("block") {
        " (check the indentation of this line)"
    } else {
        ""
    };
    YamlError {
        pos,
        message: format!("YAML syntax error: {info}{hint}"),
    }
}

fn too_deep() -> String {
    format!(
        "nesting deeper than {MAX_DEPTH} levels; a Blueprint needs far fewer, so the file was not read further"
    )
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    alias_nodes: usize,
    root: Option<Node>,
    documents: usize,
    problems: Vec<YamlError>,
}

impl Builder {
    fn run(mut self, source: &str) -> Result<Document, YamlError> {
        let mut parser = Parser::new_from_str(source);
        while let Some(event) = parser.next_event() {
            let (event, span) = event.map_err(|e| syntax_error(source, &e))?;
            self.on_event(event, Pos::of(&span))?;
        }
        let root = self.root.ok_or(YamlError {
            pos: Pos::START,
            message: "the file is empty; a Blueprint is a mapping with `services:`, `databases:` or `envVarGroups:`".into(),
        })?;
        Ok(Document {
            root,
            problems: self.problems,
        })
    }

    /// One parser event: a node finished, a collection opened or closed.
    fn on_event(&mut self, event: Event<'_>, pos: Pos) -> Result<(), YamlError> {
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(YamlError {
                        pos,
                        message: "a Blueprint is one YAML document; found a second one (`---`)"
                            .into(),
                    });
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let verbatim = style != ScalarStyle::Plain
                    || tag
                        .as_ref()
                        .is_some_and(|t| t.is_yaml_core_schema() && t.suffix == "str");
                let value = if verbatim {
                    Scalar::Str(text.to_string())
                } else {
                    resolve(&text)
                };
                let node = Node {
                    pos,
                    kind: Kind::Scalar(text.into_owned(), value),
                };
                self.finish(node, anchor)?;
            }
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().ok_or_else(|| YamlError {
                    pos,
                    message: "alias to an unknown anchor".into(),
                })?;
                self.count(node.size(), pos)?;
                // The alias is reported where it is used, not where its anchor was defined.
                let node = Node { pos, ..node };
                self.finish(node, 0)?;
            }
            Event::SequenceStart(anchor, _) => {
                self.open(pos)?;
                self.stack.push(Frame::Seq {
                    pos,
                    anchor,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(anchor, _) => {
                self.open(pos)?;
                self.stack.push(Frame::Map {
                    pos,
                    anchor,
                    entries: Vec::new(),
                    key: None,
                    seen: HashMap::new(),
                });
            }
            Event::SequenceEnd | Event::MappingEnd => self.close()?,
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
        Ok(())
    }

    /// The innermost open collection, finished.
    fn close(&mut self) -> Result<(), YamlError> {
        let (node, anchor) = match self.stack.pop() {
            Some(Frame::Seq { pos, anchor, items }) => (
                Node {
                    pos,
                    kind: Kind::Seq(items),
                },
                anchor,
            ),
            Some(Frame::Map {
                pos,
                anchor,
                entries,
                ..
            }) => (
                Node {
                    pos,
                    kind: Kind::Map(merge_keys(entries)),
                },
                anchor,
            ),
            None => return Ok(()),
        };
        self.finish(node, anchor)
    }

    fn open(&self, pos: Pos) -> Result<(), YamlError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(YamlError {
                pos,
                message: too_deep(),
            });
        }
        Ok(())
    }

    fn count(&mut self, n: usize, pos: Pos) -> Result<(), YamlError> {
        self.alias_nodes = self.alias_nodes.saturating_add(n);
        if self.alias_nodes > MAX_ALIAS_NODES {
            return Err(YamlError {
                pos,
                message: format!(
                    "aliases expand to more than {MAX_ALIAS_NODES} values; refusing to expand them further"
                ),
            });
        }
        Ok(())
    }

    fn finish(&mut self, node: Node, anchor: usize) -> Result<(), YamlError> {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries, key, seen, ..
            }) => match key.take() {
                None => match &node.kind {
                    Kind::Scalar(text, _) => *key = Some((text.clone(), node.pos)),
                    _ => {
                        return Err(YamlError {
                            pos: node.pos,
                            message: format!(
                                "a mapping key must be a plain name, found {}",
                                node.describe()
                            ),
                        });
                    }
                },
                Some((key, key_pos)) => {
                    if let Some(first) = seen.get(&key) {
                        self.problems.push(YamlError {
                            pos: key_pos,
                            message: format!(
                                "duplicate key `{}` (first defined at line {}); YAML loaders keep only one of them",
                                shorten(&key),
                                first.line
                            ),
                        });
                    } else {
                        seen.insert(key.clone(), key_pos);
                        entries.push(Entry {
                            key,
                            key_pos,
                            value: node,
                        });
                    }
                }
            },
        }
        Ok(())
    }
}

/// Applies YAML merge keys (`<<: *defaults`): entries written in the mapping win over merged ones.
fn merge_keys(entries: Vec<Entry>) -> Vec<Entry> {
    if !entries.iter().any(|e| e.key == "<<") {
        return entries;
    }
    let mut out: Vec<Entry> = Vec::new();
    let mut merged: Vec<Entry> = Vec::new();
    for entry in entries {
        if entry.key != "<<" {
            out.push(entry);
            continue;
        }
        let sources: Vec<Node> = match entry.value.kind {
            Kind::Map(_) => vec![entry.value],
            Kind::Seq(items) => items,
            // Not a mapping: keep it so that the checker reports `<<` as an unknown field.
            _ => {
                out.push(entry);
                continue;
            }
        };
        for source in sources {
            if let Kind::Map(items) = source.kind {
                merged.extend(items);
            }
        }
    }
    let mut present: std::collections::HashSet<String> =
        out.iter().map(|e| e.key.clone()).collect();
    for entry in merged {
        if present.insert(entry.key.clone()) {
            out.push(entry);
        }
    }
    out
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn resolve(text: &str) -> Scalar {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "true" | "True" | "TRUE" => return Scalar::Bool(true),
        "false" | "False" | "FALSE" => return Scalar::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Scalar::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Scalar::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Scalar::Float(f64::NAN),
        _ => {}
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<i64>() {
            Ok(i) => Scalar::Int(i),
            Err(_) => text
                .parse::<f64>()
                .map_or(Scalar::Str(text.into()), Scalar::Float),
        };
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Scalar::Int(i);
    }
    if let Some(oct) = text.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return Scalar::Int(i);
    }
    if is_float(text)
        && let Ok(f) = text.parse::<f64>()
    {
        return Scalar::Float(f);
    }
    Scalar::Str(text.into())
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`
fn is_float(text: &str) -> bool {
    let s = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (mantissa, None),
    };
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match frac {
        Some(f) => all_digits(int) && all_digits(f) && !(int.is_empty() && f.is_empty()),
        None => !int.is_empty() && all_digits(int),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(src: &str) -> Node {
        parse(src).expect("parses").root
    }

    #[test]
    fn keys_and_values_carry_one_based_lines_and_columns() {
        let node = root("a: 1\nb:\n  c: x\n");
        let b = node.entry("b").expect("b");
        assert_eq!(b.key_pos, Pos { line: 2, column: 1 });
        let c = b.value.entry("c").expect("c");
        assert_eq!(c.key_pos, Pos { line: 3, column: 3 });
        assert_eq!(c.value.pos, Pos { line: 3, column: 6 });
    }

    #[test]
    fn plain_scalars_resolve_with_the_core_schema_and_quoted_ones_stay_strings() {
        let node = root("a: 30\nb: '30'\nc: true\nd: ~\ne: 1.5\nf: 0x1F\ng: 1_000\n");
        assert_eq!(node.get("a").and_then(Node::as_int), Some(30));
        assert_eq!(node.get("b").and_then(Node::as_str), Some("30"));
        assert_eq!(node.get("c").and_then(Node::as_bool), Some(true));
        assert!(matches!(
            node.get("d").map(|n| &n.kind),
            Some(Kind::Scalar(_, Scalar::Null))
        ));
        assert!(matches!(
            node.get("e").map(|n| &n.kind),
            Some(Kind::Scalar(_, Scalar::Float(_)))
        ));
        assert_eq!(node.get("f").and_then(Node::as_int), Some(31));
        assert_eq!(node.get("g").and_then(Node::as_str), Some("1_000"));
    }

    #[test]
    fn a_duplicate_key_is_reported_where_it_repeats() {
        let doc = parse("a: 1\nb: 2\na: 3\n").expect("parses");
        assert_eq!(doc.problems.len(), 1);
        assert_eq!(doc.problems[0].pos, Pos { line: 3, column: 1 });
        assert_eq!(doc.root.get("a").and_then(Node::as_int), Some(1));
    }

    #[test]
    fn merge_keys_fill_in_without_overriding() {
        let node = root("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n");
        let m = node.get("m").expect("m");
        assert_eq!(m.get("x").and_then(Node::as_int), Some(1));
        assert_eq!(m.get("y").and_then(Node::as_int), Some(3));
    }

    #[test]
    fn exponential_aliases_are_refused_before_they_expand() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            src.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = parse(&src).expect_err("refused");
        assert!(err.message.contains("aliases"), "{}", err.message);
    }

    #[test]
    fn deep_flow_nesting_stops_at_the_depth_limit() {
        let src = "[".repeat(100_000);
        let err = parse(&src).expect_err("refused");
        assert!(err.message.contains("nesting"), "{}", err.message);
        assert_eq!(err.pos.line, 1);
    }

    #[test]
    fn deep_block_nesting_stops_at_the_depth_limit() {
        let mut src = String::new();
        for depth in 0..200 {
            src.push_str(&" ".repeat(depth));
            src.push_str("k:\n");
        }
        let err = parse(&src).expect_err("refused");
        assert!(err.message.contains("nesting"), "{}", err.message);
        assert_eq!(err.pos.line, MAX_DEPTH + 1);
    }

    #[test]
    fn floats_follow_the_core_schema_pattern() {
        for yes in ["1.5", "-0.5", ".5", "1e3", "1.E-2", "+2.0"] {
            assert!(is_float(yes), "{yes}");
        }
        for no in [".", "e3", "1e", "1.2.3", "abc", "1_0.0"] {
            assert!(!is_float(no), "{no}");
        }
    }
}
