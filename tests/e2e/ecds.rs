//! deploy/envoy-ecds: the filter config delivered over ECDS from a watched
//! file; the key list is updated without restarting Envoy, and an invalid
//! update is refused while the previous configuration keeps serving.

use crate::harness::*;

const OLD: &str = "e2e_ecds_old_key_0123456789abcdef";
const NEW: &str = "e2e_ecds_new_key_0123456789abcdef";
pub const RELOADS: &str = "extension_config_discovery.http_filter.nected_key_auth.config_reload";
pub const FAILS: &str = "extension_config_discovery.http_filter.nected_key_auth.config_fail";

/// The shipped ECDS resource with another plugin configuration.
pub fn resource(template: &str, plugin_config: &str) -> String {
    let start = template.find("        value: |\n").unwrap() + "        value: |\n".len();
    format!("{}{}", &template[..start], indent(plugin_config, 12))
}

fn keys(entries: &[(&str, &str, bool)]) -> String {
    let keys: Vec<String> = entries
        .iter()
        .map(|(id, key, revoked)| {
            format!(
                r#"{{ "id": "{id}", "sha256": "{}", "revoked": {revoked} }}"#,
                sha256_hex(key.as_bytes())
            )
        })
        .collect();
    format!(r#"{{ "routes": [], "keys": [ {} ] }}"#, keys.join(", "))
}

/// Replaces the watched file the way the README says: write, then rename.
pub fn publish(dir: &std::path::Path, content: &str) {
    let tmp = dir.join("config/.nected-key-auth.yaml.tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, dir.join("config/nected-key-auth.yaml")).unwrap();
}

/// The shipped ECDS resource (deploy/envoy-ecds/config), pointing at the
/// built filter; `resource` puts a plugin configuration into it.
pub fn template() -> String {
    let template = read("deploy/envoy-ecds/config/nected-key-auth.yaml").replace(
        "target/wasm32-wasip1/release/nected_key_auth.wasm",
        &wasm_file().display().to_string(),
    );
    assert!(
        template.contains("failure_policy: FAIL_RELOAD"),
        "the shipped ECDS resource fails closed"
    );
    template
}

/// The shipped ECDS deployment (deploy/envoy-ecds) with this plugin
/// configuration as its first ECDS resource; `publish` updates it.
pub fn setup(plugin_config: &str) -> Setup {
    let bootstrap = shipped_bootstrap("deploy/envoy-ecds/envoy.yaml")
        .replace("deploy/envoy-ecds/config", "{{DIR}}/config");
    let mut setup = Setup::new("");
    setup.bootstrap = Some(bootstrap);
    setup.files = vec![(
        "config/nected-key-auth.yaml".into(),
        resource(&template(), plugin_config),
    )];
    setup
}

#[test]
fn ecds_updates_keys_without_restart_and_refuses_a_bad_update() {
    let template = template();
    let envoy = Envoy::start("ecds", setup(&keys(&[("old", OLD, false)])));
    let mut t = Cases::default();
    t.check(
        "initial config delivered",
        envoy.wait_stat(RELOADS, 1),
        envoy.stat(RELOADS),
    );
    t.passed("old key accepted", &envoy.send(Req::get("/x").key(OLD)));
    t.status(
        "new key not yet known",
        &envoy.send(Req::get("/x").key(NEW)),
        401,
    );

    // Rotation: add the new key, revoke the old one.
    let rotated = keys(&[("old", OLD, true), ("new", NEW, false)]);
    publish(&envoy.dir, &resource(&template, &rotated));
    t.check(
        "update delivered",
        envoy.wait_stat(RELOADS, 2),
        envoy.stat(RELOADS),
    );
    t.passed(
        "new key accepted after the update",
        &envoy.send(Req::get("/x").key(NEW)),
    );
    t.status(
        "old key revoked by the update",
        &envoy.send(Req::get("/x").key(OLD)),
        401,
    );
    let fingerprint = fingerprint(&rotated);
    t.check(
        "the update logs its summary and fingerprint",
        envoy.log().contains(&format!(
            "revoked=1 expired=0 expiring_7d=0 config={fingerprint}"
        )),
        fingerprint,
    );

    // An invalid update is refused whole; the previous config keeps serving.
    let broken = r#"{ "routes": [], "keys": [ { "id": "x", "sha256": "not-hex" } ] }"#;
    publish(&envoy.dir, &resource(&template, broken));
    t.check(
        "invalid update refused",
        envoy.wait_stat(FAILS, 1),
        envoy.stat(FAILS),
    );
    t.check(
        "the refusal names the JSON path",
        envoy
            .log()
            .contains("invalid configuration: $.keys[0].sha256: must be 64 hex digits"),
        "error line",
    );
    t.passed(
        "previous config still serves the new key",
        &envoy.send(Req::get("/x").key(NEW)),
    );
    t.status(
        "previous config still refuses the old key",
        &envoy.send(Req::get("/x").key(OLD)),
        401,
    );
    t.finish();
}
