//! The checked-in JSON Schema is the generated one, and it agrees with the
//! filter's parser on valid and structurally invalid configs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::Value;

const SCHEMA_FILE: &str = "schema/plugin-config.schema.json";

fn validator() -> jsonschema::Validator {
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(SCHEMA_FILE).unwrap()).unwrap();
    jsonschema::draft202012::new(&schema).unwrap()
}

#[test]
fn checked_in_schema_is_the_generated_one() {
    let generated = nected_key_auth::schema::json_schema_text();
    let checked_in = std::fs::read_to_string(SCHEMA_FILE).unwrap_or_default();
    assert!(
        generated == checked_in,
        "{SCHEMA_FILE} is stale: regenerate it with\n  cargo run --quiet --bin nected-key -- schema > {SCHEMA_FILE}"
    );
}

#[test]
fn example_configs_validate_against_the_schema() {
    let v = validator();
    let files = vec!["envoy/plugin-config.json"];
    for file in files {
        let config: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let errors: Vec<String> = v.iter_errors(&config).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{file}: {errors:?}");
    }
}

fn digest(c: char) -> String {
    c.to_string().repeat(64)
}

#[test]
fn schema_and_parser_agree() {
    let v = validator();
    let key = format!(r#"{{"id":"k","client":"c","sha256":"{}"}}"#, digest('a'));
    let valid = [
        "{}".to_owned(),
        format!(r#"{{"keys":[{key}],"routes":[{{"name":"r","prefix":"/","auth":"private","allow_clients":["c"]}}]}}"#),
        format!(r#"{{"header":"x-api-key","forward_client":"","mode":"report","keys":[{key}]}}"#),
        r#"{"routes":[{"name":"r","path":"/a%3Ab","methods":["GET","M-SEARCH"],"hosts":["*.example.com","[::1]","10.0.0.1"],"auth":"none"}]}"#.to_owned(),
        format!(r#"{{"keys":[{{"id":"k","sha256":"{}","not_before":"2026-01-01T00:00:00+02:00","expires":"2027-01-01T00:00:00Z","revoked":true}}]}}"#, digest('F')),
    ];
    for config in &valid {
        assert!(
            nected_key_auth::config::compile(config.as_bytes()).is_ok(),
            "parser: {config}"
        );
        let value: Value = serde_json::from_str(config).unwrap();
        assert!(v.is_valid(&value), "schema: {config}");
    }
    // Structural errors both refuse (cross-field rules such as uniqueness
    // are for the parser alone).
    let invalid = [
        r#"{"extra":1}"#.to_owned(),
        r#"{"header":"Nected-Api-Key"}"#.to_owned(),
        r#"{"header":"host"}"#.to_owned(),
        r#"{"forward_client":"connection"}"#.to_owned(),
        r#"{"default_auth":"public"}"#.to_owned(),
        r#"{"strip_key":"yes"}"#.to_owned(),
        r#"{"mode":"audit"}"#.to_owned(),
        r#"{"routes":[{"name":"r","auth":"none"}]}"#.to_owned(),
        r#"{"routes":[{"name":"r","path":"/a","prefix":"/b","auth":"none"}]}"#.to_owned(),
        r#"{"routes":[{"name":"r","path":"a","auth":"none"}]}"#.to_owned(),
        r#"{"routes":[{"name":"r","prefix":"/a/","auth":"none"}]}"#.to_owned(),
        r#"{"routes":[{"name":"r","prefix":"/a","methods":["get"],"auth":"none"}]}"#.to_owned(),
        r#"{"routes":[{"name":"r","prefix":"/a","methods":[],"auth":"none"}]}"#.to_owned(),
        r#"{"routes":[{"name":"r","prefix":"/a","hosts":["a.com:80"],"auth":"none"}]}"#.to_owned(),
        r#"{"routes":[{"name":"r","prefix":"/a","auth":"none","allow_clients":["c"]}]}"#.to_owned(),
        r#"{"routes":[{"name":"","prefix":"/a","auth":"none"}]}"#.to_owned(),
        r#"{"keys":[{"id":"k"}]}"#.to_owned(),
        r#"{"keys":[{"id":"k","sha256":"abc"}]}"#.to_owned(),
        format!(r#"{{"keys":[{{"id":"k k","sha256":"{}"}}]}}"#, digest('a')),
        format!(
            r#"{{"keys":[{{"id":"k","sha256":"{}","revoked":"no"}}]}}"#,
            digest('a')
        ),
        format!(
            r#"{{"keys":[{{"id":"k","sha256":"{}","colour":"red"}}]}}"#,
            digest('a')
        ),
        "[]".to_owned(),
    ];
    for config in &invalid {
        assert!(
            nected_key_auth::config::compile(config.as_bytes()).is_err(),
            "parser accepted {config}"
        );
        let value: Value = serde_json::from_str(config).unwrap();
        assert!(!v.is_valid(&value), "schema accepted {config}");
    }
}
