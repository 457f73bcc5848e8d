//! The layout `nected-key` writes a plugin configuration in: one top-level
//! member per line, one route or key per line, each on a single line
//! (`envoy/plugin-config.json` is in this layout). ASCII only: anything
//! else is a `\u` escape, so the text embeds safely in YAML block scalars.

use crate::json::Node;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// The document in the layout above, with a final newline; `None` when it
/// holds a number (the parsed tree does not keep their value, and a
/// plugin configuration has none).
pub fn pretty(node: &Node) -> Option<String> {
    let mut out = String::new();
    match node {
        Node::Object(members) if !members.is_empty() => {
            out.push_str("{\n");
            for (i, (name, value)) in members.iter().enumerate() {
                out.push_str("  ");
                string(name, &mut out);
                out.push_str(": ");
                match value {
                    Node::Array(items)
                        if items
                            .iter()
                            .any(|i| matches!(i, Node::Object(_) | Node::Array(_))) =>
                    {
                        out.push_str("[\n");
                        for (j, item) in items.iter().enumerate() {
                            out.push_str("    ");
                            inline(item, &mut out)?;
                            if j + 1 < items.len() {
                                out.push(',');
                            }
                            out.push('\n');
                        }
                        out.push_str("  ]");
                    }
                    _ => inline(value, &mut out)?,
                }
                if i + 1 < members.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            out.push_str("}\n");
        }
        _ => {
            inline(node, &mut out)?;
            out.push('\n');
        }
    }
    Some(out)
}

/// The document on one line (`{ "id": "a", "sha256": "..." }`), without a
/// newline; `None` when it holds a number.
pub fn one_line(node: &Node) -> Option<String> {
    let mut out = String::new();
    inline(node, &mut out)?;
    Some(out)
}

fn inline(node: &Node, out: &mut String) -> Option<()> {
    match node {
        Node::Null => out.push_str("null"),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Number => return None,
        Node::String(s) => string(s, out),
        Node::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                inline(item, out)?;
            }
            out.push(']');
        }
        Node::Object(members) if members.is_empty() => out.push_str("{}"),
        Node::Object(members) => {
            out.push_str("{ ");
            for (i, (name, value)) in members.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                string(name, out);
                out.push_str(": ");
                inline(value, out)?;
            }
            out.push_str(" }");
        }
    }
    Some(())
}

/// A JSON string, ASCII only.
pub fn string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// Serializes a [`Node`] with its members in document order (for YAML).
pub struct Ordered<'n, 'a>(pub &'n Node<'a>);

impl Serialize for Ordered<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Node::Null | Node::Number => serializer.serialize_unit(),
            Node::Bool(b) => serializer.serialize_bool(*b),
            Node::String(s) => serializer.serialize_str(s),
            Node::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Ordered(item))?;
                }
                seq.end()
            }
            Node::Object(members) => {
                let mut map = serializer.serialize_map(Some(members.len()))?;
                for (name, value) in members {
                    map.serialize_entry(&**name, &Ordered(value))?;
                }
                map.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_config_is_already_in_this_layout() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/envoy/plugin-config.json"
        ))
        .unwrap();
        assert_eq!(
            pretty(&Node::parse(text.as_bytes()).unwrap()).unwrap(),
            text
        );
    }

    #[test]
    fn non_ascii_is_escaped_and_the_text_reads_back_the_same() {
        let text = "{\"a\": [{\"b\": \"\u{e9}\u{1f600}\\u007f\\\"\", \"c\": []}], \"d\": {}}";
        let node = Node::parse(text.as_bytes()).unwrap();
        let out = pretty(&node).unwrap();
        assert!(out.is_ascii(), "{out}");
        assert_eq!(Node::parse(out.as_bytes()).unwrap(), node);
        assert_eq!(
            out,
            "{\n  \"a\": [\n    { \"b\": \"\\u00e9\\ud83d\\ude00\\u007f\\\"\", \"c\": [] }\n  ],\n  \"d\": {}\n}\n"
        );
        assert!(pretty(&Node::parse(b"{\"n\": 1}").unwrap()).is_none());
    }
}
