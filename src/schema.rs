//! JSON Schema (draft 2020-12) of the plugin configuration, generated from
//! the same shape tables the config checker walks (`config::CONFIG`), so the
//! two cannot drift. `nected-key schema` prints it; the checked-in copy is
//! `schema/plugin-config.schema.json` (a test keeps them equal).

use crate::config::CONFIG;
use crate::shape::{Field, Kind, Object, Text};
use serde_json::{json, Map, Value};

/// The schema as a JSON value.
pub fn json_schema() -> Value {
    let mut defs = Map::new();
    let mut root = object_schema(&CONFIG, &mut defs);
    if let Value::Object(m) = &mut root {
        m.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
        m.insert(
            "$id".into(),
            json!("nected-key-auth/plugin-config.schema.json"),
        );
        m.insert("$defs".into(), Value::Object(defs));
    }
    root
}

/// The schema as pretty-printed text with a final newline.
pub fn json_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&json_schema()).unwrap_or_default();
    text.push('\n');
    text
}

fn object_schema(shape: &Object, defs: &mut Map<String, Value>) -> Value {
    let mut description = shape.doc.to_owned();
    if !shape.rules.is_empty() {
        description += " Also checked: ";
        description += &shape.rules.join("; ");
        description.push('.');
    }
    let properties: Map<String, Value> = shape
        .fields
        .iter()
        .map(|f| (f.name.to_owned(), field_schema(f, defs)))
        .collect();
    let required: Vec<&str> = shape
        .fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name)
        .collect();
    let mut m = Map::new();
    m.insert("title".into(), json!(shape.title));
    m.insert("description".into(), json!(description));
    m.insert("type".into(), json!("object"));
    m.insert("additionalProperties".into(), json!(false));
    if !required.is_empty() {
        m.insert("required".into(), json!(required));
    }
    m.insert("properties".into(), Value::Object(properties));
    if let Ok(Value::Object(extra)) = serde_json::from_str::<Value>(shape.schema_extra) {
        m.extend(extra);
    }
    Value::Object(m)
}

fn field_schema(field: &Field, defs: &mut Map<String, Value>) -> Value {
    let mut s = match &field.kind {
        Kind::Bool { default } => json!({ "type": "boolean", "default": default }),
        Kind::Text { rule, default } => {
            let mut s = text_schema(rule);
            if let (Some(d), Value::Object(m)) = (default, &mut s) {
                m.insert("default".into(), json!(d));
            }
            s
        }
        Kind::Choice { values, default } => {
            let mut s = json!({ "type": "string", "enum": values });
            if let (Some(d), Value::Object(m)) = (default, &mut s) {
                m.insert("default".into(), json!(d));
            }
            s
        }
        Kind::TextList { rule } => {
            json!({ "type": "array", "minItems": 1, "items": text_schema(rule) })
        }
        Kind::ObjectList { item } => {
            if !defs.contains_key(item.title) {
                let def = object_schema(item, defs);
                defs.insert(item.title.to_owned(), def);
            }
            json!({ "type": "array", "items": { "$ref": format!("#/$defs/{}", item.title) }, "default": [] })
        }
    };
    if let Value::Object(m) = &mut s {
        let rule = m.get("description").and_then(Value::as_str).unwrap_or("");
        let description = format!("{} {rule}", field.doc).trim_end().to_owned();
        m.insert("description".into(), json!(description));
    }
    s
}

fn text_schema(rule: &Text) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), json!("string"));
    m.insert(
        "description".into(),
        json!(format!("Must be {}.", rule.what)),
    );
    if let Some(p) = rule.pattern {
        m.insert("pattern".into(), json!(p));
    }
    if let Some(n) = rule.min_len {
        m.insert("minLength".into(), json!(n));
    }
    if let Some(n) = rule.max_len {
        m.insert("maxLength".into(), json!(n));
    }
    if let Some(f) = rule.format {
        m.insert("format".into(), json!(f));
    }
    if !rule.forbidden.is_empty() {
        // The parser also refuses them spelled with `_` for `-`.
        let mut names: Vec<String> = rule.forbidden.iter().map(|f| f.to_string()).collect();
        names.extend(
            rule.forbidden
                .iter()
                .filter(|f| f.contains('-'))
                .map(|f| f.replace('-', "_")),
        );
        m.insert("not".into(), json!({ "enum": names }));
    }
    Value::Object(m)
}
