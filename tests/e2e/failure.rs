//! `failure_policy`, proven with a crashing filter: a test-only build (cargo
//! feature `test-crash`, src/filter/crash.rs) panics on a request carrying
//! `x-nka-test-crash: 1`. With the shipped `FAIL_RELOAD` that request gets
//! 503 and never reaches the upstream, and the next requests are decided by
//! a fresh VM; `FAIL_CLOSED` answers 503 for good.

use crate::harness::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const KEY: &str = "e2e_failure_key_0123456789abcdef";
const TRIGGER: &str = "x-nka-test-crash";

/// The test-only crashing build, in its own target folder (never the
/// release artifact). `make test` builds it first and sets
/// `NKA_CRASH_WASM`; otherwise it is built here (a no-op when current).
pub fn crash_wasm() -> PathBuf {
    if let Some(path) = std::env::var_os("NKA_CRASH_WASM").map(PathBuf::from) {
        if path.is_file() {
            return path;
        }
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--lib", "--release", "--target", "wasm32-wasip1"])
        .args(["--features", "test-crash", "--target-dir", "target/crash"])
        .current_dir(repo())
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "building the test-crash filter failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    repo().join("target/crash/wasm32-wasip1/release/nected_key_auth.wasm")
}

/// A bootstrap with one listener, the given wasm and failure policy.
fn bootstrap(wasm: &Path, failure_policy: &str) -> String {
    let config = format!(
        r#"{{ "routes": [ {{ "name": "health", "path": "/healthz", "auth": "none" }} ],
  "keys": [ {{ "id": "k", "client": "billing", "sha256": "{}" }} ] }}"#,
        sha256_hex(KEY.as_bytes())
    );
    format!(
        r#"node: {{ id: e2e, cluster: e2e }}
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
static_resources:
  listeners:
  - name: plain
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: plain
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: echo }}
          http_filters:
{filters}  clusters:
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
        filters = http_filters(10, failure_policy, &wasm.display().to_string(), &config),
    )
}

fn start(name: &str, wasm: &Path, failure_policy: &str) -> Envoy {
    let mut setup = Setup::new("");
    setup.bootstrap = Some(bootstrap(wasm, failure_policy));
    Envoy::start(name, setup)
}

/// Every non-zero `wasm.*` stat, for the report.
fn wasm_stats(envoy: &Envoy) -> String {
    let r = envoy.admin_get("/stats?filter=^wasm\\.").unwrap();
    r.body_str()
        .lines()
        .filter(|l| !l.ends_with(": 0"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Requests the echo upstream received through Envoy.
const UPSTREAM: &str = "cluster.echo.upstream_rq_total";
/// Envoy's FAIL_RELOAD counters for the plugin named `nected_key_auth`.
const RELOAD_SUCCESS: &str = "wasm.nected_key_auth.vm_reload_success";
const RELOAD_BACKOFF: &str = "wasm.nected_key_auth.vm_reload_backoff";
const RELOAD_FAILURE: &str = "wasm.nected_key_auth.vm_reload_failure";
/// VMs (base and per-worker) created by the V8 runtime.
const VMS_CREATED: &str = "wasm.envoy.wasm.runtime.v8.created";

/// Sends the trigger request: 503, and the upstream never sees it.
fn crash(t: &mut Cases, envoy: &Envoy, label: &str) {
    let upstream = envoy.stat(UPSTREAM);
    let r = envoy.send(Req::get("/x").key(KEY).header(TRIGGER, "1"));
    t.status(&format!("{label}: the crashing request gets 503"), &r, 503);
    t.check(
        &format!("{label}: the crashing request never reached the upstream"),
        envoy.stat(UPSTREAM) == upstream,
        (upstream, envoy.stat(UPSTREAM)),
    );
    t.check(
        &format!("{label}: the filter really panicked"),
        envoy.log().contains("test-crash: trigger header present"),
        "panic line",
    );
}

#[test]
fn a_crashed_vm_answers_503_and_fail_reload_replaces_it() {
    let wasm = crash_wasm();
    let bytes = std::fs::read(&wasm).unwrap();
    assert!(
        bytes
            .windows(TRIGGER.len())
            .any(|w| w == TRIGGER.as_bytes()),
        "{} is not the test-crash build",
        wasm.display()
    );
    // Both Envoys run side by side: FAIL_RELOAD's recovery (after Envoy's
    // reload backoff, about 1 s) is the clock that shows FAIL_CLOSED does
    // not recover, without a sleep.
    let reload = start("failure-reload", &wasm, "FAIL_RELOAD");
    let closed = start("failure-closed", &wasm, "FAIL_CLOSED");
    let mut t = Cases::default();
    for (label, envoy) in [("FAIL_RELOAD", &reload), ("FAIL_CLOSED", &closed)] {
        t.passed(
            &format!("{label}: valid key before the crash"),
            &envoy.send(Req::get("/x").key(KEY)),
        );
        t.status(
            &format!("{label}: no key before the crash"),
            &envoy.send(Req::get("/x")),
            401,
        );
        t.status(
            &format!("{label}: a trigger of another value is ignored"),
            &envoy.send(Req::get("/x").header(TRIGGER, "0")),
            401,
        );
    }
    let created = reload.stat(VMS_CREATED);
    // FAIL_CLOSED first, so that it is past the reload backoff once
    // FAIL_RELOAD has recovered.
    crash(&mut t, &closed, "FAIL_CLOSED");
    crash(&mut t, &reload, "FAIL_RELOAD");

    // FAIL_RELOAD: until the backoff allows a reload, every request gets
    // 503 (also a valid key: fail closed); then a fresh VM decides.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let upstream = reload.stat(UPSTREAM);
    let mut unavailable = 0;
    let recovered = loop {
        let r = reload.send(Req::get("/x").key(KEY));
        if r.status != 503 {
            break r;
        }
        t.check(
            "a 503 during the backoff never reached the upstream",
            !r.reached_upstream() && reload.stat(UPSTREAM) == upstream,
            reload.stat(UPSTREAM),
        );
        unavailable += 1;
        if std::time::Instant::now() > deadline {
            break r;
        }
        // Probe interval.
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    t.passed(
        "FAIL_RELOAD: a valid key passes after the reload",
        &recovered,
    );
    t.status(
        "FAIL_RELOAD: no key gets 401 after the reload",
        &reload.send(Req::get("/x")),
        401,
    );
    t.check(
        "FAIL_RELOAD: Envoy counts one successful reload",
        reload.stat(RELOAD_SUCCESS) == 1 && reload.stat(RELOAD_FAILURE) == 0,
        wasm_stats(&reload),
    );
    t.check(
        "FAIL_RELOAD: the requests refused during the backoff are counted",
        reload.stat(RELOAD_BACKOFF) == unavailable,
        (unavailable, wasm_stats(&reload)),
    );
    t.check(
        "FAIL_RELOAD: a new VM was created",
        reload.stat(VMS_CREATED) > created,
        wasm_stats(&reload),
    );
    let reconfigured = reload
        .filter_log()
        .iter()
        .filter(|l| l.contains(": configured "))
        .count();
    eprintln!(
        "FAIL_RELOAD: trigger -> 503; {unavailable} more 503s during the reload backoff; \
         then 200 / 401; filter configured {reconfigured} times; stats: {}",
        wasm_stats(&reload)
    );

    // FAIL_CLOSED, by now past the reload backoff: still 503 for every
    // request, no reload attempted.
    let upstream = closed.stat(UPSTREAM);
    for (case, req) in [
        ("FAIL_CLOSED: valid key still 503", Req::get("/x").key(KEY)),
        ("FAIL_CLOSED: no key still 503", Req::get("/x")),
    ] {
        t.status(case, &closed.send(req), 503);
    }
    t.check(
        "FAIL_CLOSED: nothing reached the upstream after the crash",
        closed.stat(UPSTREAM) == upstream,
        closed.stat(UPSTREAM),
    );
    t.check(
        "FAIL_CLOSED: no reload",
        closed.stat(RELOAD_SUCCESS) == 0 && closed.stat(RELOAD_BACKOFF) == 0,
        wasm_stats(&closed),
    );
    eprintln!("FAIL_CLOSED: stats: {}", wasm_stats(&closed));
    t.finish();
}
