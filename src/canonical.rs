//! The canonical form of a plugin configuration (RFC 8785, JSON
//! Canonicalization Scheme) and its fingerprint.
//!
//! Members sorted by their UTF-16 code units, no insignificant white space,
//! strings with the minimal escapes (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`,
//! `\t`, other controls as `\u00xx`), everything else as UTF-8. The same
//! configuration then has the same fingerprint however it was formatted or
//! embedded: pretty JSON, a YAML object a gateway serializes to JSON in its
//! own member order, or a JSON string.
//!
//! The plugin configuration holds no numbers, and [`Node`] does not keep
//! their value: a document with a number has no canonical form here
//! ([`sha256`] returns `None`). Such a document is never a valid
//! configuration, so it never needs a fingerprint.

use crate::json::Node;
use sha2::{Digest, Sha256};

/// Where the canonical text goes: a buffer, or a hash fed as it is written.
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

/// Writes the canonical form of `node`; false (and a partial output) when
/// the document holds a number.
pub fn write(node: &Node, out: &mut impl Sink) -> bool {
    match node {
        Node::Null => out.put(b"null"),
        Node::Bool(true) => out.put(b"true"),
        Node::Bool(false) => out.put(b"false"),
        Node::Number => return false,
        Node::String(s) => write_string(s, out),
        Node::Array(items) => {
            out.put(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.put(b",");
                }
                if !write(item, out) {
                    return false;
                }
            }
            out.put(b"]");
        }
        Node::Object(members) => {
            let mut order: Vec<usize> = (0..members.len()).collect();
            order.sort_by(|&a, &b| {
                let name = |i: usize| members.get(i).map_or("", |(n, _)| &**n);
                utf16_order(name(a), name(b))
            });
            out.put(b"{");
            for (i, at) in order.into_iter().enumerate() {
                let Some((name, value)) = members.get(at) else {
                    continue;
                };
                if i > 0 {
                    out.put(b",");
                }
                write_string(name, out);
                out.put(b":");
                if !write(value, out) {
                    return false;
                }
            }
            out.put(b"}");
        }
    }
    true
}

/// Orders strings by their UTF-16 code units (RFC 8785 §3.2.3). UTF-8
/// byte order agrees except between a character above U+FFFF (a surrogate
/// pair, 0xD800..0xDFFF) and one in U+E000..U+FFFF: compare chars, mapping
/// the former below the latter.
fn utf16_order(a: &str, b: &str) -> std::cmp::Ordering {
    let unit = |c: char| {
        let c = u32::from(c);
        if c > 0xFFFF {
            0xD800 + ((c - 0x10000) >> 10)
        } else {
            c
        }
    };
    let (mut a, mut b) = (a.chars(), b.chars());
    loop {
        match (a.next(), b.next()) {
            (Some(x), Some(y)) if x == y => continue,
            (Some(x), Some(y)) => {
                // Equal leading units (two astral chars of one high
                // surrogate) fall back to the chars, which then order as
                // their low surrogates do.
                return unit(x).cmp(&unit(y)).then(x.cmp(&y));
            }
            (x, y) => return x.is_some().cmp(&y.is_some()),
        }
    }
}

/// The canonical text of `node`, or `None` when it holds a number.
pub fn to_vec(node: &Node) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    write(node, &mut out).then_some(out)
}

/// SHA-256 of the canonical form, computed without building it.
pub fn sha256(node: &Node) -> Option<[u8; 32]> {
    let mut hash = Sha256::new();
    write(node, &mut hash).then(|| hash.finalize().into())
}

fn write_string(s: &str, out: &mut impl Sink) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.put(b"\"");
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.put(bytes.get(start..i).unwrap_or_default());
        if short.is_empty() {
            let hi = HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
            let lo = HEX.get(usize::from(b & 15)).copied().unwrap_or(b'0');
            out.put(&[b'\\', b'u', b'0', b'0', hi, lo]);
        } else {
            out.put(short);
        }
        start = i + 1;
    }
    out.put(bytes.get(start..).unwrap_or_default());
    out.put(b"\"");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(text: &str) -> String {
        let node = Node::parse(text.as_bytes()).unwrap();
        String::from_utf8(to_vec(&node).unwrap()).unwrap()
    }

    #[test]
    fn members_sorted_and_no_white_space() {
        assert_eq!(
            canonical("{ \"b\" : [ true , null ], \"a\": { \"d\": \"x\", \"c\": false } }"),
            r#"{"a":{"c":false,"d":"x"},"b":[true,null]}"#
        );
        assert_eq!(canonical(" {\n}\n"), "{}");
        assert_eq!(canonical("[]"), "[]");
    }

    #[test]
    fn members_sorted_by_utf16_code_units() {
        // RFC 8785 §3.2.3: U+FB33 (one UTF-16 unit 0xFB33) sorts after
        // U+1F600 (surrogates 0xD83D 0xDE00), though its UTF-8 sorts first.
        assert_eq!(
            canonical("{\"\u{fb33}\":null,\"\u{1f600}\":null}"),
            "{\"\u{1f600}\":null,\"\u{fb33}\":null}"
        );
        assert_eq!(
            canonical(r#"{"b":null,"a":null,"":null,"aa":null,"A":null}"#),
            r#"{"":null,"A":null,"a":null,"aa":null,"b":null}"#
        );
    }

    #[test]
    fn utf16_order_agrees_with_encode_utf16() {
        let words = [
            "",
            "a",
            "aa",
            "b",
            "A",
            "\u{e9}",
            "\u{fb33}",
            "\u{ffff}",
            "\u{e000}",
            "\u{1f600}",
            "\u{1f601}",
            "\u{10000}",
            "\u{10ffff}",
            "a\u{1f600}",
            "a\u{fb33}",
            "\u{d7ff}",
        ];
        for a in words {
            for b in words {
                assert_eq!(
                    utf16_order(a, b),
                    a.encode_utf16().cmp(b.encode_utf16()),
                    "{a:?} {b:?}"
                );
            }
        }
    }

    #[test]
    fn strings_use_the_minimal_escapes() {
        assert_eq!(
            canonical(r#""\u0041\/\u00e9\"\\\b\f\n\r\t\u0001\u001F\u007f\u20ac""#),
            "\"A/\u{e9}\\\"\\\\\\b\\f\\n\\r\\t\\u0001\\u001f\u{7f}\u{20ac}\""
        );
    }

    #[test]
    fn the_same_config_however_written_has_the_same_hash() {
        let pretty = "{\n  \"keys\": [ { \"sha256\": \"ab\", \"id\": \"k\" } ],\n  \"mode\": \"report\"\n}\n";
        let compact = r#"{"mode":"report","keys":[{"id":"k","sha256":"ab"}]}"#;
        let escaped = r#"{"mod\u0065":"report","keys":[{"id":"\u006b","sha256":"ab"}]}"#;
        let hash = |t: &str| sha256(&Node::parse(t.as_bytes()).unwrap()).unwrap();
        assert_eq!(hash(pretty), hash(compact));
        assert_eq!(hash(pretty), hash(escaped));
        assert_ne!(hash(pretty), hash(&compact.replace("report", "enforce")));
        // Hashing while writing gives the hash of the written text.
        let text = canonical(compact);
        assert_eq!(hash(compact), <[u8; 32]>::from(Sha256::digest(text)));
    }

    #[test]
    fn a_number_has_no_canonical_form_here() {
        assert!(sha256(&Node::parse(br#"{"a":[1]}"#).unwrap()).is_none());
        assert!(to_vec(&Node::parse(b"2.5").unwrap()).is_none());
    }
}
