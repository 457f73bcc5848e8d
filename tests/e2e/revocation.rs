//! Revocation reaches connections opened before an LDS update: Envoy keeps
//! the replaced filter chain (and its configuration of the filter) for the
//! connections it already had, for up to `--drain-time-s`; a key revoked in
//! the new configuration is refused on their next request too. Filters with
//! another plugin name in the same VM are unaffected, and an un-revoke takes
//! effect once the configurations that revoke the key are gone.

use crate::h2::H2;
use crate::hardening::KeepAlive;
use crate::harness::*;
use std::time::{Duration, Instant};

const K1: &str = "e2e_revocation_key_one_1111111111";
const K2: &str = "e2e_revocation_key_two_2222222222";
const K3: &str = "e2e_revocation_key_three_33333333";
/// Revoked by the other filter only.
const R: &str = "e2e_revocation_other_RRRRRRRRRRRR";

const LDS_SUCCESS: &str = "listener_manager.lds.update_success";
const DRAINING: &str = "listener_manager.total_filter_chains_draining";

fn plugin_config(revoked_k1: bool, with_k3: bool, revoked_r: bool) -> String {
    let mut keys = vec![
        format!(
            r#"{{"id":"k1","sha256":"{}","revoked":{revoked_k1}}}"#,
            sha256_hex(K1.as_bytes())
        ),
        format!(r#"{{"id":"k2","sha256":"{}"}}"#, sha256_hex(K2.as_bytes())),
        format!(
            r#"{{"id":"r","sha256":"{}","revoked":{revoked_r}}}"#,
            sha256_hex(R.as_bytes())
        ),
    ];
    if with_k3 {
        keys.push(format!(
            r#"{{"id":"k3","sha256":"{}"}}"#,
            sha256_hex(K3.as_bytes())
        ));
    }
    format!(
        r#"{{"default_auth":"private","log_requests":true,"keys":[{}]}}"#,
        keys.join(",")
    )
}

fn hcm(name: &str, n: usize, filters: &str) -> String {
    let text = format!(
        r#"- name: envoy.filters.network.http_connection_manager
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
    stat_prefix: {name}
    codec_type: AUTO
    route_config:
      virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
        - match: {{ prefix: "/" }}
          route: {{ cluster: echo }}
    http_filters:
{filters}"#
    );
    indent(&text, n)
}

/// The LDS resource: listener `main`, the filter named `nected_key_auth`.
fn lds_resource(plugin_config: &str) -> String {
    format!(
        "resources:\n- \"@type\": type.googleapis.com/envoy.config.listener.v3.Listener\n  name: main\n  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}\n  filter_chains:\n  - filters:\n{}",
        hcm(
            "main",
            4,
            &http_filters(4, "FAIL_RELOAD", "{{WASM}}", plugin_config)
        )
    )
}

/// A static listener `other` whose filter, in the same VM (same `vm_id`
/// and code), has another plugin name.
fn bootstrap() -> String {
    let other = http_filters(
        4,
        "FAIL_RELOAD",
        "{{WASM}}",
        &plugin_config(false, false, true),
    )
    .replacen(
        "      name: nected_key_auth\n",
        "      name: other_auth\n",
        1,
    );
    assert!(other.contains("name: other_auth"), "{other}");
    format!(
        r#"node: {{ id: e2e-revocation, cluster: e2e-revocation }}
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
dynamic_resources:
  lds_config:
    resource_api_version: V3
    path_config_source:
      path: {{{{DIR}}}}/lds/listeners.yaml
      watched_directory: {{ path: {{{{DIR}}}}/lds }}
static_resources:
  listeners:
  - name: other
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
{}  clusters:
  - name: echo
    connect_timeout: 2s
    type: STATIC
    load_assignment:
      cluster_name: echo
      endpoints:
      - lb_endpoints:
        - endpoint:
            address: {{ socket_address: {{ address: 127.0.0.1, port_value: {{{{UPSTREAM}}}} }} }}
"#,
        hcm("other", 6, &other)
    )
}

fn start(name: &str, drain: &[&str]) -> Envoy {
    let mut setup = Setup::new("");
    setup.bootstrap = Some(bootstrap());
    setup.files = vec![(
        "lds/listeners.yaml".into(),
        lds_resource(&plugin_config(false, false, false)),
    )];
    setup.log_args.extend(drain.iter().map(|s| s.to_string()));
    setup.concurrency = 2;
    Envoy::start(name, setup)
}

fn publish(envoy: &Envoy, config: &str, n: u64, t: &mut Cases) {
    let content = substitute(&lds_resource(config), 0, &wasm_file(), &envoy.dir);
    let tmp = envoy.dir.join("lds/.listeners.yaml.tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, envoy.dir.join("lds/listeners.yaml")).unwrap();
    t.check(
        &format!("LDS update {n} accepted"),
        envoy.wait_stat(LDS_SUCCESS, n),
        envoy.stat(LDS_SUCCESS),
    );
}

fn get(envoy: &Envoy, port: u16, key: &str) -> u16 {
    let _ = envoy;
    raw(port, &Req::get("/x").key(key).bytes()).status
}

/// Fresh connections until one gets `status` for `key` (the new filter
/// chain is handed to the workers a little after the update is accepted).
fn probe(port: u16, key: &str, status: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if raw(port, &Req::get("/x").key(key).bytes()).status == status {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn wait_gauge_zero(envoy: &Envoy, name: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if envoy.stat(name) == 0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Envoy's default drain (600 s, gradual): connections opened before the
/// push stay on the old configuration; the revocation reaches them.
#[test]
fn a_revocation_pushed_by_lds_reaches_connections_opened_before() {
    let envoy = start("revocation-lds", &[]);
    let main = envoy.ports["main"];
    let other = envoy.ports["other"];
    let mut t = Cases::default();

    // Connections opened before the push, on the first configuration.
    let mut h1 = KeepAlive::connect(main);
    let mut h2 = H2::connect(main);
    t.check(
        "before: HTTP/1.1 keep-alive, K1",
        h1.get("/x", K1) == 200,
        "",
    );
    let r = h2.get("localhost", "/x", &[("nected-api-key", K1.as_bytes())]);
    t.check("before: HTTP/2, K1", r.status == 200, r.status);
    t.check(
        "before: main, R (revoked only by the other filter)",
        get(&envoy, main, R) == 200,
        "",
    );
    t.check(
        "before: other, R revoked there",
        get(&envoy, other, R) == 401,
        "",
    );

    // Push: K1 revoked.
    publish(&envoy, &plugin_config(true, false, false), 2, &mut t);
    t.check("after: new connections refuse K1", probe(main, K1, 401), "");
    t.check(
        "after: the old filter chain is still draining",
        envoy.stat(DRAINING) > 0,
        envoy.stat(DRAINING),
    );
    let status = h1.get("/x", K1);
    t.check(
        "after: the old HTTP/1.1 connection refuses K1",
        status == 401,
        status,
    );
    let r = h2.get("localhost", "/x", &[("nected-api-key", K1.as_bytes())]);
    t.check(
        "after: the old HTTP/2 connection refuses K1",
        r.status == 401,
        format_args!("{} goaway={}", r.status, h2.goaway),
    );
    if !h2.goaway {
        // (Unless Envoy's gradual drain happened to close it already.)
        let r = h2.get("localhost", "/x", &[("nected-api-key", K2.as_bytes())]);
        t.check(
            "after: the old HTTP/2 connection still passes K2",
            r.status == 200 || (r.status == 0 && h2.goaway),
            r.status,
        );
    }
    // Other plugin names: never affected, in either direction.
    t.check(
        "after: other filter, K1 passes",
        get(&envoy, other, K1) == 200,
        "",
    );
    t.check(
        "after: main, R still passes",
        get(&envoy, main, R) == 200,
        "",
    );
    t.check(
        "after: other, R still refused",
        get(&envoy, other, R) == 401,
        "",
    );

    // Push: K1 un-revoked (and K3 added, to see the update arrive). The
    // configuration that revokes K1 is still live (draining): K1 stays
    // refused until it is gone.
    publish(&envoy, &plugin_config(false, true, false), 3, &mut t);
    t.check(
        "un-revoke: new connections have K3",
        probe(main, K3, 200),
        "",
    );
    t.check(
        "un-revoke: K1 still refused while a revoking configuration is live",
        get(&envoy, main, K1) == 401,
        "",
    );
    let log = envoy.filter_log();
    t.check(
        "the refusal on old connections is logged as revoked",
        log.iter()
            .any(|l| l.contains("reason=revoked") && l.contains("key_id=k1")),
        &log,
    );
    t.finish();
}

/// A short, immediate drain: once the configurations that revoke a key are
/// gone, a later configuration that un-revokes it takes effect.
#[test]
fn an_unrevoke_takes_effect_once_older_configurations_are_gone() {
    let envoy = start(
        "revocation-unrevoke",
        &["--drain-strategy", "immediate", "--drain-time-s", "1"],
    );
    let main = envoy.ports["main"];
    let mut t = Cases::default();
    t.check("first: K1 passes", get(&envoy, main, K1) == 200, "");
    publish(&envoy, &plugin_config(true, false, false), 2, &mut t);
    t.check("revoked: K1 refused", probe(main, K1, 401), "");
    t.check(
        "the first configuration drained",
        wait_gauge_zero(&envoy, DRAINING),
        envoy.stat(DRAINING),
    );
    publish(&envoy, &plugin_config(false, true, false), 3, &mut t);
    t.check("un-revoked: K3 arrived", probe(main, K3, 200), "");
    t.check(
        "the revoking configuration drained",
        wait_gauge_zero(&envoy, DRAINING),
        envoy.stat(DRAINING),
    );
    t.check("un-revoked: K1 passes again", probe(main, K1, 200), "");
    t.check("K2 passed throughout", get(&envoy, main, K2) == 200, "");
    t.finish();
}
