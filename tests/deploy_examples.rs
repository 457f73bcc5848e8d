#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Every plugin configuration embedded in `deploy/` is a complete, valid
//! configuration: it is pulled out of the exact field the gateway reads (an
//! explicit table below), then checked by the filter's parser, both through
//! the library and through the real `nected-key check` binary.
//!
//! The table must list every example file that embeds a configuration: a
//! file under `deploy/*/` that mentions `"keys"`, `keys:` or `sha256` and is
//! not listed fails the test, and so does a listed file that is missing.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How the gateway carries the plugin configuration in that field.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Embed {
    /// A JSON (or YAML) object; the gateway serializes it to JSON.
    Object,
    /// A string holding the JSON text, passed to the filter as is.
    JsonString,
    /// nginx.conf: the single-quoted argument of `proxy_wasm <path>`
    /// (`path` is the module name), with nginx's `\'` and `\\` escapes.
    NginxArgument,
}

struct Example {
    /// Path from the repository root.
    file: &'static str,
    /// Document index in a multi-document YAML file (0 for JSON).
    doc: usize,
    /// Field path: keys and array indexes, separated by `/`.
    path: &'static str,
    embed: Embed,
}

const EXAMPLES: &[Example] = &[
    Example {
        file: "deploy/istio/wasm-plugin.yaml",
        doc: 0,
        path: "spec/pluginConfig",
        embed: Embed::Object,
    },
    Example {
        file: "deploy/envoy-gateway/envoy-extension-policy.yaml",
        doc: 0,
        path: "spec/wasm/0/config",
        embed: Embed::Object,
    },
    Example {
        file: "deploy/kong/kong.yml",
        doc: 0,
        path: "services/0/filter_chains/0/filters/0/config",
        embed: Embed::JsonString,
    },
    Example {
        file: "deploy/kong/kong-plugin.yml",
        doc: 0,
        path: "services/0/routes/0/plugins/0/config",
        embed: Embed::JsonString,
    },
    Example {
        file: "deploy/kong/nginx.conf",
        doc: 0,
        path: "nected_key_auth",
        embed: Embed::NginxArgument,
    },
    Example {
        file: "deploy/apisix/route.json",
        doc: 0,
        path: "plugins/nected_key_auth/conf",
        embed: Embed::JsonString,
    },
    Example {
        file: "deploy/envoy-ecds/config/nected-key-auth.yaml",
        doc: 0,
        path: "resources/0/typed_config/config/configuration/value",
        embed: Embed::JsonString,
    },
    Example {
        file: "envoy/ecds/nected-key-auth.yaml",
        doc: 0,
        path: "resources/0/typed_config/config/configuration/value",
        embed: Embed::JsonString,
    },
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The documents of a YAML or JSON file, as JSON values.
fn documents(rel: &str) -> Vec<Value> {
    let text = read(rel);
    if rel.ends_with(".json") {
        let value: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: not JSON: {e}"));
        return vec![value];
    }
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let yaml = <serde_yaml::Value as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|e| panic!("{rel}: not YAML: {e}"));
            serde_json::to_value(yaml).unwrap_or_else(|e| panic!("{rel}: not JSON-like: {e}"))
        })
        .collect()
}

fn field<'a>(mut at: &'a Value, path: &str, rel: &str) -> &'a Value {
    for seg in path.split('/') {
        let next = match seg.parse::<usize>() {
            Ok(i) => at.get(i),
            Err(_) => at.get(seg),
        };
        at = next.unwrap_or_else(|| panic!("{rel}: no `{path}` (stops at `{seg}`)"));
    }
    at
}

/// The bytes the gateway hands to the filter for one example.
fn embedded_config(ex: &Example) -> Vec<u8> {
    if let Embed::NginxArgument = ex.embed {
        let text = read(ex.file);
        let open = format!("proxy_wasm {} '", ex.path);
        let start = text
            .find(&open)
            .unwrap_or_else(|| panic!("{}: no `{open}`", ex.file))
            + open.len();
        let end = start
            + text[start..]
                .find("';")
                .unwrap_or_else(|| panic!("{}: unterminated argument", ex.file));
        return text[start..end]
            .replace("\\'", "'")
            .replace("\\\\", "\\")
            .into_bytes();
    }
    let docs = documents(ex.file);
    let doc = docs
        .get(ex.doc)
        .unwrap_or_else(|| panic!("{}: no document {}", ex.file, ex.doc));
    let value = field(doc, ex.path, ex.file);
    match (ex.embed, value) {
        (Embed::Object, Value::Object(_)) => serde_json::to_vec(value).unwrap(),
        (Embed::JsonString, Value::String(s)) => s.as_bytes().to_vec(),
        (embed, other) => panic!(
            "{}: `{}` should be {embed:?}, found {}",
            ex.file,
            ex.path,
            kind(other)
        ),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Writes `bytes` to a scratch file under target/ and runs `nected-key check`.
fn cli_check(name: &str, bytes: &[u8]) -> std::process::Output {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deploy-examples");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{}.json", name.replace(['/', '.'], "_")));
    std::fs::write(&file, bytes).unwrap();
    Command::new(env!("CARGO_BIN_EXE_nected-key"))
        .arg("check")
        .arg(&file)
        .output()
        .unwrap()
}

fn describe(out: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn every_embedded_config_validates_compiles_and_passes_nected_key_check() {
    let schema: Value = serde_json::from_str(&read("schema/plugin-config.schema.json")).unwrap();
    let schema = jsonschema::draft202012::new(&schema).unwrap();
    for ex in EXAMPLES {
        let bytes = embedded_config(ex);
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        let schema_errors: Vec<String> =
            schema.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(
            schema_errors.is_empty(),
            "{} `{}` does not validate against the JSON Schema: {schema_errors:?}",
            ex.file,
            ex.path
        );
        if let Err(errors) = nected_key_auth::config::compile(&bytes) {
            let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
            panic!(
                "{} `{}`: rejected:\n{}",
                ex.file,
                ex.path,
                errors.join("\n")
            );
        }
        let out = cli_check(ex.file, &bytes);
        assert!(
            out.status.success(),
            "nected-key check on {} `{}`:\n{}",
            ex.file,
            ex.path,
            describe(&out)
        );
    }
}

#[test]
fn nected_key_check_rejects_a_broken_config() {
    // Guards the test above: a `check` that accepted anything would prove nothing.
    let out = cli_check("broken", br#"{"keys": [{"id": "no-digest"}], "bogus": 1}"#);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
}

#[test]
fn embedded_configs_are_the_demo_config() {
    // Demo digests only: every example carries envoy/plugin-config.json, so
    // the keys of envoy/demo-keys.env work against all of them.
    let demo: Value = serde_json::from_str(&read("envoy/plugin-config.json")).unwrap();
    for ex in EXAMPLES {
        let mut embedded: Value = serde_json::from_slice(&embedded_config(ex)).unwrap();
        if ex.file.starts_with("deploy/kong/") {
            // On ngx_wasm_module (Kong) `:authority` is nginx's server_name:
            // the demo's `hosts` route needs the client's host.
            let host_from = embedded.as_object_mut().and_then(|o| o.remove("host_from"));
            assert_eq!(host_from, Some(Value::from("host")), "{}", ex.file);
        }
        assert_eq!(
            embedded, demo,
            "{} `{}` differs from envoy/plugin-config.json",
            ex.file, ex.path
        );
    }
}

/// Every file under `dir`, recursively, as paths from the repository root.
fn files_under(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            let rel = path.strip_prefix(repo()).unwrap();
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

fn deploy_files() -> Vec<String> {
    let mut files = Vec::new();
    files_under(&repo().join("deploy"), &mut files);
    files.sort();
    files
}

/// A `keys` field, in JSON or YAML.
fn has_keys_field(text: &str) -> bool {
    text.contains("\"keys\"") || text.lines().any(|l| l.trim_start().starts_with("keys:"))
}

fn mentions_a_config(text: &str) -> bool {
    has_keys_field(text) || text.contains("sha256")
}

#[test]
fn every_example_embedding_a_config_is_listed_and_exists() {
    let listed: BTreeSet<&str> = EXAMPLES.iter().map(|ex| ex.file).collect();
    for file in &listed {
        assert!(
            repo().join(file).is_file(),
            "{file} is listed in tests/deploy_examples.rs but missing"
        );
    }
    for file in deploy_files() {
        let Ok(text) = std::fs::read_to_string(repo().join(&file)) else {
            continue; // not text: cannot embed a configuration
        };
        if file.ends_with(".md") {
            // Prose may talk about digests, but a configuration shown in a
            // README would go unchecked: it belongs in an example file.
            assert!(
                !has_keys_field(&text),
                "{file} embeds a plugin configuration; move it to a checked example file"
            );
            continue;
        }
        if mentions_a_config(&text) {
            assert!(
                listed.contains(file.as_str()),
                "{file} seems to embed a plugin configuration (\"keys\" or sha256) \
                 but is not in the EXAMPLES table of tests/deploy_examples.rs"
            );
        }
    }
}

#[test]
fn no_plaintext_demo_key_in_deploy() {
    // READMEs may name the variables of envoy/demo-keys.env, never the keys.
    let keys: Vec<String> = read("envoy/demo-keys.env")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(_, v)| v.trim().to_owned()))
        .filter(|v| !v.is_empty())
        .collect();
    assert!(!keys.is_empty(), "envoy/demo-keys.env holds no keys");
    for file in deploy_files() {
        let Ok(text) = std::fs::read_to_string(repo().join(&file)) else {
            continue;
        };
        for key in &keys {
            assert!(
                !text.contains(key.as_str()),
                "{file} holds a plaintext demo key"
            );
        }
    }
}

/// The examples `nected-key render` writes, by gateway: each file must be
/// exactly `nected-key render --gateway G --config envoy/plugin-config.json`.
/// (Kong's files are written by hand: they show two forms, see
/// deploy/kong/README.md.)
const RENDERED: &[(&str, &str)] = &[
    (
        "envoy-ecds",
        "deploy/envoy-ecds/config/nected-key-auth.yaml",
    ),
    ("envoy-ecds", "envoy/ecds/nected-key-auth.yaml"),
    ("istio", "deploy/istio/wasm-plugin.yaml"),
    (
        "envoy-gateway",
        "deploy/envoy-gateway/envoy-extension-policy.yaml",
    ),
    ("apisix", "deploy/apisix/route.json"),
];

#[test]
fn rendered_examples_are_what_nected_key_render_writes() {
    for (gateway, file) in RENDERED {
        let out = Command::new(env!("CARGO_BIN_EXE_nected-key"))
            .args([
                "render",
                "--gateway",
                gateway,
                "--config",
                "envoy/plugin-config.json",
            ])
            .current_dir(repo())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", describe(&out));
        assert!(
            read(file) == String::from_utf8_lossy(&out.stdout),
            "{file} differs from `nected-key render --gateway {gateway} --config envoy/plugin-config.json`; \
             regenerate it:\n  nected-key render --gateway {gateway} --config envoy/plugin-config.json > {file}"
        );
        // And `check` reads it back, with the plain JSON's fingerprint.
        let plain = Command::new(env!("CARGO_BIN_EXE_nected-key"))
            .args(["check", "envoy/plugin-config.json"])
            .current_dir(repo())
            .output()
            .unwrap();
        let checked = Command::new(env!("CARGO_BIN_EXE_nected-key"))
            .args(["check", file])
            .current_dir(repo())
            .output()
            .unwrap();
        assert!(checked.status.success(), "{file}: {}", describe(&checked));
        let fingerprint = |o: &std::process::Output| {
            let s = String::from_utf8_lossy(&o.stdout).into_owned();
            let at = s.find("(config ").unwrap() + 8;
            s[at..at + 12].to_owned()
        };
        assert_eq!(fingerprint(&checked), fingerprint(&plain), "{file}");
    }
}

#[test]
fn the_drift_test_can_fail() {
    // Guards the test above: a rendered file that differs is noticed.
    let out = Command::new(env!("CARGO_BIN_EXE_nected-key"))
        .args([
            "render",
            "--gateway",
            "istio",
            "--config",
            "envoy/plugin-config.json",
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    let rendered = String::from_utf8(out.stdout).unwrap();
    assert_ne!(
        read("deploy/envoy-gateway/envoy-extension-policy.yaml"),
        rendered
    );
    assert_ne!(rendered.replace("mode: enforce", "mode: report"), rendered);
}
