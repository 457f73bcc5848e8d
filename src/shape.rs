//! Declarative shape of a JSON config document.
//!
//! The plugin config is described once, as static tables of [`Object`]s and
//! [`Field`]s (see `config.rs`). The same tables drive two things:
//! the checker that walks a parsed document and reports *every* structural
//! error with its JSON path, and the JSON Schema generator used by the
//! `nected-key` CLI. Rules that span several fields (uniqueness, cross
//! references) live in the compile step and are described in `Object::rules`.

use crate::json::Node;
use std::fmt;

/// A JSON object with a fixed set of members.
pub struct Object {
    pub title: &'static str,
    pub doc: &'static str,
    pub fields: &'static [Field],
    /// Cross-field rules, checked by the compile step; documentation only.
    pub rules: &'static [&'static str],
    /// Extra JSON Schema keywords for those rules, as a JSON object text.
    pub schema_extra: &'static str,
}

/// One member of an [`Object`].
pub struct Field {
    pub name: &'static str,
    pub doc: &'static str,
    pub required: bool,
    pub kind: Kind,
}

/// What a member's value must be.
pub enum Kind {
    Bool {
        default: bool,
    },
    Text {
        rule: &'static Text,
        default: Option<&'static str>,
    },
    Choice {
        values: &'static [&'static str],
        default: Option<&'static str>,
    },
    /// A non-empty array of strings, each following `rule`.
    TextList {
        rule: &'static Text,
    },
    /// An array of objects, possibly empty.
    ObjectList {
        item: &'static Object,
    },
}

/// A rule for one string value.
pub struct Text {
    /// Says what the value must be, completing "must be ...".
    pub what: &'static str,
    pub check: fn(&str) -> bool,
    /// The same rule as an ECMA-262 regular expression, for the schema.
    pub pattern: Option<&'static str>,
    pub min_len: Option<usize>,
    pub max_len: Option<usize>,
    /// JSON Schema `format`, for the schema only.
    pub format: Option<&'static str>,
    /// Values that the pattern allows but the rule refuses.
    pub forbidden: &'static [&'static str],
}

/// A JSON path such as `$.routes[1].prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath(String);

impl JsonPath {
    pub fn root() -> JsonPath {
        JsonPath("$".to_owned())
    }

    pub fn field(&self, name: &str) -> JsonPath {
        let plain = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        let mut s = String::with_capacity(self.0.len() + name.len() + 4);
        s.push_str(&self.0);
        if plain {
            s.push('.');
            s.push_str(name);
        } else {
            s.push('[');
            s.push_str(&serde_json::to_string(name).unwrap_or_else(|_| "\"?\"".to_owned()));
            s.push(']');
        }
        JsonPath(s)
    }

    pub fn index(&self, i: usize) -> JsonPath {
        let mut s = String::with_capacity(self.0.len() + 8);
        s.push_str(&self.0);
        s.push('[');
        push_decimal(&mut s, i);
        s.push(']');
        JsonPath(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn push_decimal(s: &mut String, n: usize) {
    if n >= 10 {
        push_decimal(s, n / 10);
    }
    s.push(char::from(b'0' + (n % 10) as u8));
}

/// A member's path, built only when an error needs it (a configuration
/// with 10,000 keys would otherwise build 50,000 paths it never shows).
#[derive(Clone, Copy)]
pub struct At<'a> {
    parent: &'a JsonPath,
    field: &'a str,
    index: Option<usize>,
}

impl<'a> At<'a> {
    pub fn field(parent: &'a JsonPath, field: &'a str) -> At<'a> {
        At {
            parent,
            field,
            index: None,
        }
    }

    fn item(self, i: usize) -> At<'a> {
        At {
            index: Some(i),
            ..self
        }
    }

    pub fn path(&self) -> JsonPath {
        let p = self.parent.field(self.field);
        match self.index {
            Some(i) => p.index(i),
            None => p,
        }
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What is wrong at a path. Messages never include a configured value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Syntax {
        line: usize,
        column: usize,
        what: String,
    },
    Empty,
    WrongType {
        expected: &'static str,
        found: &'static str,
    },
    UnknownField,
    /// An unknown member close to a field name (`sha265`, `SHA256`): shown
    /// with the field it probably means.
    UnknownFieldDidYouMean {
        field: &'static str,
    },
    /// An unknown member whose name is not shown: it does not look like a
    /// field name, and could be a pasted key or digest.
    UnknownFieldNotShown,
    RepeatedField,
    MissingField,
    EmptyList,
    NotOneOf {
        values: &'static [&'static str],
    },
    Invalid {
        what: &'static str,
    },
    Forbidden,
    Duplicate {
        first: JsonPath,
    },
    Rule(&'static str),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Problem::Syntax { line, column, what } => {
                write!(f, "not valid JSON ({what} at line {line} column {column})")
            }
            Problem::Empty => f.write_str("the configuration is empty"),
            Problem::WrongType { expected, found } => {
                write!(f, "must be {expected}, found {found}")
            }
            Problem::UnknownField => f.write_str("unknown field"),
            Problem::UnknownFieldDidYouMean { field } => {
                write!(f, "unknown field; did you mean `{field}`?")
            }
            Problem::UnknownFieldNotShown => f.write_str(
                "unknown field (its name is not shown: it does not look like a field name)",
            ),
            Problem::RepeatedField => f.write_str("field given more than once"),
            Problem::MissingField => f.write_str("required field is missing"),
            Problem::EmptyList => f.write_str("must not be an empty list"),
            Problem::NotOneOf { values } => {
                f.write_str("must be one of")?;
                for (i, v) in values.iter().enumerate() {
                    write!(f, "{}\"{v}\"", if i == 0 { " " } else { ", " })?;
                }
                Ok(())
            }
            Problem::Invalid { what } => write!(f, "must be {what}"),
            Problem::Forbidden => f.write_str("this header name is not allowed here"),
            Problem::Duplicate { first } => write!(f, "duplicate of {first}"),
            Problem::Rule(text) => f.write_str(text),
        }
    }
}

/// One configuration error: a JSON path and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: JsonPath,
    pub problem: Problem,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.problem)
    }
}

/// Collects errors while a document is checked.
#[derive(Default, Debug)]
pub struct Errors(pub Vec<ConfigError>);

impl Errors {
    pub fn add(&mut self, path: JsonPath, problem: Problem) {
        self.0.push(ConfigError { path, problem });
    }
}

/// The members of an object that passed their own checks.
pub struct Members<'a> {
    shape: &'static Object,
    values: Vec<Option<&'a Node<'a>>>,
}

impl<'a> Members<'a> {
    fn get(&self, name: &str) -> Option<&'a Node<'a>> {
        let at = self.shape.fields.iter().position(|f| f.name == name)?;
        self.values.get(at).copied().flatten()
    }

    /// Whether the member was present (and well-formed).
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// A string member, or its declared default.
    pub fn text(&self, name: &str) -> Option<&'a str> {
        match self.get(name) {
            Some(Node::String(s)) => Some(&**s),
            _ => self.default_text(name),
        }
    }

    fn default_text(&self, name: &str) -> Option<&'static str> {
        let field = self.shape.fields.iter().find(|f| f.name == name)?;
        match field.kind {
            Kind::Text { default, .. } | Kind::Choice { default, .. } => default,
            _ => None,
        }
    }

    /// A boolean member, or its declared default.
    pub fn flag(&self, name: &str) -> bool {
        match self.get(name) {
            Some(Node::Bool(b)) => *b,
            _ => self
                .shape
                .fields
                .iter()
                .find(|f| f.name == name)
                .map(|f| matches!(f.kind, Kind::Bool { default: true }))
                .unwrap_or(false),
        }
    }

    /// An array member (empty when absent).
    pub fn list(&self, name: &str) -> &'a [Node<'a>] {
        match self.get(name) {
            Some(Node::Array(items)) => items,
            _ => &[],
        }
    }
}

/// Checks `node` against `shape`: its type, unknown, repeated and missing
/// members, and each member's own rule. Nested object lists are checked by
/// the caller (which needs their paths), so only their type is checked here.
/// Returns the well-formed members, or `None` when `node` is not an object.
pub fn check_object<'a>(
    node: &'a Node,
    shape: &'static Object,
    path: &JsonPath,
    errors: &mut Errors,
) -> Option<Members<'a>> {
    let Node::Object(members) = node else {
        errors.add(
            path.clone(),
            Problem::WrongType {
                expected: "an object",
                found: node.type_name(),
            },
        );
        return None;
    };
    let mut values: Vec<Option<&Node>> = vec![None; shape.fields.len()];
    let mut seen = vec![false; shape.fields.len()];
    for (name, value) in members {
        let Some(index) = shape.fields.iter().position(|f| f.name == name) else {
            if let Some(field) = near_miss(name, shape) {
                errors.add(path.field(name), Problem::UnknownFieldDidYouMean { field });
            } else if looks_like_field_name(name) {
                errors.add(path.field(name), Problem::UnknownField);
            } else {
                errors.add(path.clone(), Problem::UnknownFieldNotShown);
            }
            continue;
        };
        let at = At::field(path, name);
        if let Some(s) = seen.get_mut(index) {
            if *s {
                errors.add(at.path(), Problem::RepeatedField);
                if let Some(v) = values.get_mut(index) {
                    *v = None;
                }
                continue;
            }
            *s = true;
        }
        let Some(field) = shape.fields.get(index) else {
            continue;
        };
        if check_value(value, &field.kind, at, errors) {
            if let Some(v) = values.get_mut(index) {
                *v = Some(value);
            }
        }
    }
    for (field, present) in shape.fields.iter().zip(&seen) {
        if field.required && !present {
            errors.add(path.field(field.name), Problem::MissingField);
        }
    }
    Some(Members { shape, values })
}

/// Short and made of letters and `_` (or `$`): a misspelt field name, safe
/// to show. Anything else (digits, long strings) might be a secret.
fn looks_like_field_name(name: &str) -> bool {
    (1..=24).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'$')
}

/// The field an unknown member name probably misspells: at most one edit
/// (insertion, deletion, substitution or swap of neighbours) away from it,
/// ignoring ASCII case, or two for names of 8 or more. Such a name is as
/// short as a field name, so never a pasted key or digest, and may be shown.
fn near_miss(name: &str, shape: &Object) -> Option<&'static str> {
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if name.len() > 24 || !plain {
        return None;
    }
    let name = name.to_ascii_lowercase();
    shape
        .fields
        .iter()
        .map(|f| (edit_distance(name.as_bytes(), f.name.as_bytes()), f.name))
        .filter(|&(d, field)| d <= if field.len() >= 8 { 2 } else { 1 })
        .min_by_key(|&(d, _)| d)
        .map(|(_, field)| field)
}

/// Optimal string alignment distance (Levenshtein plus adjacent swaps).
fn edit_distance(a: &[u8], b: &[u8]) -> usize {
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    let at = |i: usize, j: usize| i * width + j;
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            let value = if i == 0 || j == 0 {
                i + j
            } else {
                let cost = usize::from(a.get(i - 1) != b.get(j - 1));
                let get = |i, j| d.get(at(i, j)).copied().unwrap_or(usize::MAX - 1);
                let mut v = (get(i - 1, j) + 1)
                    .min(get(i, j - 1) + 1)
                    .min(get(i - 1, j - 1) + cost);
                if i > 1 && j > 1 && a.get(i - 1) == b.get(j - 2) && a.get(i - 2) == b.get(j - 1) {
                    v = v.min(get(i - 2, j - 2) + 1);
                }
                v
            };
            if let Some(cell) = d.get_mut(at(i, j)) {
                *cell = value;
            }
        }
    }
    d.last().copied().unwrap_or(0)
}

fn check_value(node: &Node, kind: &Kind, path: At, errors: &mut Errors) -> bool {
    let wrong = |expected| Problem::WrongType {
        expected,
        found: node.type_name(),
    };
    match (kind, node) {
        (Kind::Bool { .. }, Node::Bool(_)) => true,
        (Kind::Bool { .. }, _) => {
            errors.add(path.path(), wrong("a boolean"));
            false
        }
        (Kind::Text { rule, .. }, Node::String(s)) => check_text(s, rule, path, errors),
        (Kind::Text { .. }, _) => {
            errors.add(path.path(), wrong("a string"));
            false
        }
        (Kind::Choice { values, .. }, Node::String(s)) => {
            let ok = values.contains(&&**s);
            if !ok {
                errors.add(path.path(), Problem::NotOneOf { values });
            }
            ok
        }
        (Kind::Choice { .. }, _) => {
            errors.add(path.path(), wrong("a string"));
            false
        }
        (Kind::TextList { rule }, Node::Array(items)) => {
            if items.is_empty() {
                errors.add(path.path(), Problem::EmptyList);
                return false;
            }
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                let at = path.item(i);
                match item {
                    Node::String(s) => ok &= check_text(s, rule, at, errors),
                    other => {
                        errors.add(
                            at.path(),
                            Problem::WrongType {
                                expected: "a string",
                                found: other.type_name(),
                            },
                        );
                        ok = false;
                    }
                }
            }
            ok
        }
        (Kind::TextList { .. }, _) => {
            errors.add(path.path(), wrong("an array of strings"));
            false
        }
        (Kind::ObjectList { .. }, Node::Array(_)) => true,
        (Kind::ObjectList { .. }, _) => {
            errors.add(path.path(), wrong("an array of objects"));
            false
        }
    }
}

fn check_text(s: &str, rule: &Text, path: At, errors: &mut Errors) -> bool {
    let len = s.chars().count();
    let fits = rule.min_len.is_none_or(|m| len >= m) && rule.max_len.is_none_or(|m| len <= m);
    if !fits || !(rule.check)(s) {
        errors.add(path.path(), Problem::Invalid { what: rule.what });
        return false;
    }
    // Header names: `x_http_method_override` is refused like
    // `x-http-method-override` (the decision reads both spellings).
    if rule
        .forbidden
        .iter()
        .any(|f| crate::config::fold_eq(f.as_bytes(), s.as_bytes()))
    {
        errors.add(path.path(), Problem::Forbidden);
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match crate::config::compile(text.as_bytes()) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn near_misses_name_the_field_they_probably_mean() {
        let digest = "ab".repeat(32);
        for (member, want) in [
            (
                "sha265",
                "$.keys[0].sha265: unknown field; did you mean `sha256`?",
            ),
            (
                "SHA256",
                "$.keys[0].SHA256: unknown field; did you mean `sha256`?",
            ),
            (
                "sha_256",
                "$.keys[0].sha_256: unknown field; did you mean `sha256`?",
            ),
            (
                "sha25",
                "$.keys[0].sha25: unknown field; did you mean `sha256`?",
            ),
            (
                "reovked",
                "$.keys[0].reovked: unknown field; did you mean `revoked`?",
            ),
            (
                "expire",
                "$.keys[0].expire: unknown field; did you mean `expires`?",
            ),
            (
                "notbefore",
                "$.keys[0].notbefore: unknown field; did you mean `not_before`?",
            ),
        ] {
            let text = format!(
                r#"{{"keys":[{{"id":"a","sha256":"{digest}","{member}":"2030-01-01T00:00:00Z"}}]}}"#
            );
            assert_eq!(errors(&text), [want], "{member}");
        }
    }

    #[test]
    fn a_secret_looking_member_stays_hidden() {
        let digest = "ab".repeat(32);
        for member in [
            "nk_N7iDDqgYNCI3rrLc837ImsGxi9El1gyJIHzGsizyOes".to_owned(),
            digest.clone(),
            "s3cr3t-value".to_owned(),
        ] {
            let text = format!(r#"{{"keys":[{{"id":"a","sha256":"{digest}","{member}":true}}]}}"#);
            let errors = errors(&text);
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].starts_with("$.keys[0]: unknown field (its name is not shown"));
            assert!(!errors[0].contains(&member));
        }
    }

    #[test]
    fn edit_distance_counts_swaps_as_one() {
        assert_eq!(edit_distance(b"sha265", b"sha256"), 1);
        assert_eq!(edit_distance(b"", b"abc"), 3);
        assert_eq!(edit_distance(b"kitten", b"sitting"), 3);
        assert_eq!(edit_distance(b"mode", b"mode"), 0);
    }
}
