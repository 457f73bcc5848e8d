//! `nected-key render`: a plugin configuration in the field and form each
//! gateway reads, and the way back for `nected-key check`.
//!
//! | gateway | file | field | form |
//! |---|---|---|---|
//! | `envoy` | an `http_filters` entry | `typed_config.config.configuration.value` | JSON string (`StringValue`) |
//! | `envoy-ecds` | an ECDS resource file | `resources[0].typed_config.config.configuration.value` | JSON string |
//! | `istio` | `WasmPlugin` | `spec.pluginConfig` | object |
//! | `envoy-gateway` | `EnvoyExtensionPolicy` | `spec.wasm[0].config` | object |
//! | `kong` | declarative config | `services[0].filter_chains[0].filters[0].config` | JSON string |
//! | `apisix` | Admin API route body | `plugins.nected_key_auth.conf` | JSON string |

use super::pretty::{pretty, Ordered};
use crate::json::Node;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gateway {
    Envoy,
    EnvoyEcds,
    Istio,
    EnvoyGateway,
    Kong,
    Apisix,
}

impl Gateway {
    pub const ALL: [Gateway; 6] = [
        Gateway::Envoy,
        Gateway::EnvoyEcds,
        Gateway::Istio,
        Gateway::EnvoyGateway,
        Gateway::Kong,
        Gateway::Apisix,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Gateway::Envoy => "envoy",
            Gateway::EnvoyEcds => "envoy-ecds",
            Gateway::Istio => "istio",
            Gateway::EnvoyGateway => "envoy-gateway",
            Gateway::Kong => "kong",
            Gateway::Apisix => "apisix",
        }
    }

    pub fn parse(s: &str) -> Option<Gateway> {
        Gateway::ALL.into_iter().find(|g| g.name() == s)
    }
}

/// Where `make build` writes the filter; the Envoy files load it from there
/// (relative to Envoy's working folder).
const WASM: &str = "target/wasm32-wasip1/release/nected_key_auth.wasm";

/// The rendered file for `gateway`; `fingerprint` is the config's, named in
/// the header comment. `None` when the document holds a number.
pub fn render(gateway: Gateway, config: &Node, fingerprint: &str) -> Option<String> {
    let json = pretty(config)?;
    let header = |what: &str| {
        format!(
            "# {what}\n# Rendered by `nected-key render --gateway {}` (config {fingerprint}): edit the\n# plugin configuration (JSON) and render again rather than editing this file.\n",
            gateway.name()
        )
    };
    Some(match gateway {
        Gateway::Envoy => format!(
            "{}{}",
            header(
                "nected-key-auth as an Envoy HTTP filter: put this entry in an\n# HttpConnectionManager's `http_filters`, before envoy.filters.http.router."
            ),
            wasm_filter_entry(&json, "", "- name: nected_key_auth\n  typed_config:\n")
        ),
        Gateway::EnvoyEcds => format!(
            "{}resources:\n{}",
            header(
                "The nected-key-auth filter configuration, delivered to Envoy by ECDS\n# (extension config discovery) from a watched folder: replace this file\n# with an atomic rename (write a temporary file in the same folder, then\n# rename it here) and every listener using the filter picks up the new\n# keys and routes without a restart. A configuration the filter rejects is\n# refused whole and the previous one keeps serving."
            ),
            wasm_filter_entry(
                &json,
                "",
                "- \"@type\": type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig\n  name: nected_key_auth\n  typed_config:\n"
            )
        ),
        Gateway::Istio => format!(
            "{}apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata:
  name: nected-key-auth
  namespace: istio-system
spec:
  selector:
    matchLabels:
      istio: ingressgateway
  # Pin the image: oci://REGISTRY/REPO@sha256:<image digest>.
  url: oci://registry.example.com/nected/nected-key-auth:0.1.0
  imagePullPolicy: IfNotPresent
  # imagePullSecret: nected-registry-pull-secret
  # Before Istio's authentication filters: the key is checked first.
  phase: AUTHN
  # A plugin that cannot be fetched or crashes answers 5xx; never fail open.
  # failStrategy needs Istio 1.19 or later; from 1.27, FAIL_RELOAD also
  # replaces a crashed VM (still failing closed).
  failStrategy: FAIL_CLOSE
  pluginName: nected_key_auth
  pluginConfig:
{}",
            header(
                "nected-key-auth on Istio (1.19 or later): a WasmPlugin that puts the\n# filter on the ingress gateway, ahead of Istio's own authn/authz filters.\n# Build and push the OCI image first (deploy/istio/README.md), then set\n# `url` to your image, pinned by digest. Istio encodes `pluginConfig` as\n# JSON and hands it to the filter."
            ),
            yaml_block(config, 4)?
        ),
        Gateway::EnvoyGateway => format!(
            "{}apiVersion: gateway.envoyproxy.io/v1alpha1
kind: EnvoyExtensionPolicy
metadata:
  name: nected-key-auth
  namespace: default
spec:
  targetRefs:
  - group: gateway.networking.k8s.io
    kind: HTTPRoute
    name: backend
  wasm:
  - name: nected-key-auth
    rootID: nected_key_auth
    code:
      type: HTTP
      http:
        url: https://artifacts.example.com/nected-key-auth/0.1.0/nected_key_auth.wasm
        # REPLACE with the bare hex digest of the module (no `sha256:`
        # prefix): sha256sum target/wasm32-wasip1/release/nected_key_auth.wasm
        sha256: \"0000000000000000000000000000000000000000000000000000000000000000\"
    # A module that cannot be fetched, verified or run answers 5xx.
    failOpen: false
    config:
{}",
            header(
                "nected-key-auth on Envoy Gateway (v1.1.0 or later): an EnvoyExtensionPolicy\n# that attaches the filter to an HTTPRoute (`backend`, the route of the\n# Envoy Gateway quickstart; target `kind: Gateway` to cover every route of a\n# Gateway). Publish nected_key_auth.wasm at `url` and set `sha256` to its\n# digest first (deploy/envoy-gateway/README.md); a wrong digest fails closed."
            ),
            yaml_block(config, 6)?
        ),
        Gateway::Kong => format!(
            "{}_format_version: \"3.0\"
services:
- name: api
  # The repository's echo upstream (envoy/echo_upstream.py); use your API.
  url: http://127.0.0.1:18080
  routes:
  - name: api
    paths: [\"/\"]
    strip_path: false
  filter_chains:
  - name: nected-key-auth
    filters:
    - name: nected_key_auth
      config: |
{}",
            header(
                "nected-key-auth on Kong Gateway (DB-less declarative configuration, format\n# 3.0): a service, its route, and a filter chain running the\n# `nected_key_auth` filter (nected_key_auth.wasm in wasm_filters_path). Kong\n# passes a filter's `config` through as opaque bytes: here a JSON string."
            ),
            indent(&json, 8)
        ),
        Gateway::Apisix => {
            let mut conf = String::new();
            super::pretty::string(&json, &mut conf);
            format!(
                "{{\n  \"uri\": \"/*\",\n  \"plugins\": {{\n    \"nected_key_auth\": {{\n      \"conf\": {conf}\n    }}\n  }},\n  \"upstream\": {{\n    \"type\": \"roundrobin\",\n    \"nodes\": {{\n      \"127.0.0.1:18080\": 1\n    }}\n  }}\n}}\n"
            )
        }
    })
}

/// The `Wasm` filter (FAIL_RELOAD, V8, the built module) with `json` as its
/// plugin configuration, under `head` (which opens `typed_config:`).
fn wasm_filter_entry(json: &str, pad: &str, head: &str) -> String {
    let body = format!(
        "    \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
    config:
      name: nected_key_auth
      root_id: nected_key_auth
      # A broken VM answers 503 and is replaced; never fail open.
      failure_policy: FAIL_RELOAD
      vm_config:
        vm_id: nected_key_auth
        runtime: envoy.wasm.runtime.v8
        code:
          local:
            filename: {WASM}
      configuration:
        \"@type\": type.googleapis.com/google.protobuf.StringValue
        value: |
{}",
        indent(json, 10)
    );
    indent(&format!("{head}{body}"), pad.len())
}

/// `config` as block YAML, indented by `n`.
fn yaml_block(config: &Node, n: usize) -> Option<String> {
    let yaml = serde_yaml::to_string(&Ordered(config)).ok()?;
    Some(indent(&yaml, n))
}

fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_owned()
            } else {
                format!("{pad}{l}\n")
            }
        })
        .collect()
}

// ---- reading rendered files back -------------------------------------------

/// A plugin configuration found in a gateway file.
#[derive(Debug)]
pub struct Embedded {
    /// Where, as a path into the document (`spec.pluginConfig`).
    pub at: String,
    /// The bytes the gateway hands to the filter (an object is serialized
    /// to JSON, as the gateway does).
    pub bytes: Vec<u8>,
}

/// The plugin configurations embedded in a YAML or JSON gateway file: every
/// place a rendered file (or a whole Envoy bootstrap) carries one. `None`
/// when the text is not YAML at all.
pub fn embedded(text: &str) -> Option<Vec<Embedded>> {
    let mut found = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = <serde_yaml::Value as serde::Deserialize>::deserialize(doc).ok()?;
        let at = if i == 0 {
            String::new()
        } else {
            format!("(document {})", i + 1)
        };
        walk(&value, &at, &mut found);
    }
    Some(found)
}

fn walk(v: &serde_yaml::Value, at: &str, found: &mut Vec<Embedded>) {
    use serde_yaml::Value as Y;
    let join = |name: &str| {
        if at.is_empty() {
            name.to_owned()
        } else {
            format!("{at}.{name}")
        }
    };
    match v {
        Y::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &format!("{at}[{i}]"), found);
            }
        }
        Y::Mapping(m) => {
            let get = |k: &str| m.get(k);
            let text = |k: &str| get(k).and_then(Y::as_str);
            // Envoy: the Wasm filter's `configuration` StringValue.
            if let Some(Y::Mapping(c)) = get("configuration") {
                let string_value = c
                    .get("@type")
                    .and_then(Y::as_str)
                    .is_some_and(|t| t.ends_with("google.protobuf.StringValue"));
                if let (true, Some(Y::String(s))) = (string_value, c.get("value")) {
                    push(found, join("configuration.value"), s.as_bytes().to_vec());
                }
            }
            // Istio WasmPlugin.
            if text("kind") == Some("WasmPlugin") {
                if let Some(c) = get("spec").and_then(|s| s.get("pluginConfig")) {
                    embed(found, join("spec.pluginConfig"), c);
                }
            }
            // Envoy Gateway EnvoyExtensionPolicy.
            if text("kind") == Some("EnvoyExtensionPolicy") {
                if let Some(Y::Sequence(wasm)) = get("spec").and_then(|s| s.get("wasm")) {
                    for (i, w) in wasm.iter().enumerate() {
                        if let Some(c) = w.get("config") {
                            embed(found, join(&format!("spec.wasm[{i}].config")), c);
                        }
                    }
                }
            }
            // Kong: a filter in a filter chain, or a filter as a plugin.
            if text("name") == Some("nected_key_auth") && text("kind").is_none() {
                if let Some(c) = get("config") {
                    embed(found, join("config"), c);
                }
            }
            // APISIX: plugins.nected_key_auth.conf.
            if let Some(c) = get("nected_key_auth").and_then(|p| p.get("conf")) {
                embed(found, join("nected_key_auth.conf"), c);
            }
            for (k, v) in m {
                if let Some(k) = k.as_str() {
                    walk(v, &join(k), found);
                }
            }
        }
        _ => {}
    }
}

fn embed(found: &mut Vec<Embedded>, at: String, v: &serde_yaml::Value) {
    match v {
        serde_yaml::Value::String(s) => push(found, at, s.as_bytes().to_vec()),
        // As JSON, members in the file's order (the gateway's own order
        // may differ; the fingerprint does not depend on it).
        other => push(found, at, serde_json::to_vec(other).unwrap_or_default()),
    }
}

fn push(found: &mut Vec<Embedded>, at: String, bytes: Vec<u8>) {
    if !found.iter().any(|e| e.at == at) {
        found.push(Embedded { at, bytes });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/envoy/plugin-config.json"
        ))
        .unwrap()
    }

    #[test]
    fn every_rendered_file_carries_the_config_where_check_finds_it() {
        let text = demo();
        let node = Node::parse(text.as_bytes()).unwrap();
        let want = crate::config::compile(text.as_bytes()).unwrap().fingerprint;
        for g in Gateway::ALL {
            let out = render(g, &node, &want).unwrap();
            let found = embedded(&out).unwrap();
            assert_eq!(found.len(), 1, "{}: {found:?}", g.name());
            let p = crate::config::compile(&found[0].bytes).unwrap();
            assert_eq!(p.fingerprint, want, "{}", g.name());
            assert_eq!(Gateway::parse(g.name()), Some(g));
        }
    }

    #[test]
    fn plain_yaml_without_a_config_finds_nothing() {
        assert!(embedded("a: 1\nb: [x]\n").unwrap().is_empty());
        assert!(embedded("{\"header\": \"x\"}").unwrap().is_empty());
        assert!(embedded("a: [").is_none());
    }
}
