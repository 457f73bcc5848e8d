//! The operator's day, through the real `nected-key` binary and the real
//! Envoy: `make run`'s live configuration (the shipped envoy/envoy.yaml, its
//! ECDS folder and scripts/watch-config.sh), per-key and per-reason
//! counters in /stats and /stats/prometheus, `nected-key usage` on them,
//! and `render` output loaded into Envoy with the fingerprint `check` shows.

use crate::harness::*;
use crate::shipped::{demo_setup, render};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn nected_key(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nected-key"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The fingerprint `nected-key check FILE` prints.
fn check_fingerprint(file: &Path) -> String {
    let o = nected_key(&["check", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let at = out.find("(config ").unwrap() + "(config ".len();
    out[at..at + 12].to_owned()
}

/// scripts/watch-config.sh, killed when dropped.
struct Watcher {
    child: Child,
    log: PathBuf,
}

impl Watcher {
    fn start(config: &Path, resource: &Path, log: PathBuf) -> Watcher {
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(repo().join("scripts/watch-config.sh"))
            .arg(config)
            .arg(resource)
            .arg(env!("CARGO_BIN_EXE_nected-key"))
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap();
        Watcher { child, log }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the watcher has printed `needle` (a readiness probe).
    fn wait_for(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.output().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- watcher output ----\n{}", self.output());
        }
    }
}

/// Sends `req` until it gets `status` or 20 s pass; the time it took.
fn wait_status(envoy: &Envoy, req: impl Fn() -> Req, status: u16) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        if envoy.send(req()).status == status {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    None
}

fn demo_key(name: &str) -> String {
    read("envoy/demo-keys.env")
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")).map(str::to_owned))
        .unwrap()
}

#[test]
fn make_run_serves_plugin_config_live_add_revoke_and_a_broken_edit() {
    let envoy = Envoy::start(
        "make-run",
        demo_setup(&read("envoy/ecds/nected-key-auth.yaml")),
    );
    let dir = envoy.dir.clone();
    // The watcher renders the module path as `make run` has it, relative
    // to Envoy's working folder (here the scratch folder).
    let module = dir.join("target/wasm32-wasip1/release/nected_key_auth.wasm");
    std::fs::create_dir_all(module.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(wasm_file(), &module).unwrap();
    let config = dir.join("plugin-config.json");
    std::fs::write(&config, read("envoy/plugin-config.json")).unwrap();
    let resource = dir.join("ecds/nected-key-auth.yaml");
    let watcher = Watcher::start(&config, &resource, dir.join("watch.log"));
    let cfg = config.to_str().unwrap();
    let cron = demo_key("DEMO_KEY_CRON");
    let workflows = |key: &str| Req::get("/api/v1/workflows/demo").key(key);
    let mut t = Cases::default();

    t.check(
        "the watcher publishes the config it starts with",
        watcher.wait_for("published"),
        watcher.output(),
    );
    t.passed("demo key before any change", &envoy.send(workflows(&cron)));

    // add: the new key works within seconds, with no restart.
    let o = nected_key(&["add", "--config", cfg, "--id", "me"]);
    t.check("nected-key add", o.status.success(), text(&o.stderr));
    let key = text(&o.stdout).trim().to_owned();
    let took = wait_status(&envoy, || workflows(&key), 200);
    t.check(
        "the added key gets 200 within a few seconds",
        took.is_some_and(|d| d < Duration::from_secs(5)),
        took,
    );
    let fingerprint = check_fingerprint(&config);
    t.check(
        "Envoy's configure line has the fingerprint `check` shows for the file",
        envoy
            .log()
            .contains(&format!("config={fingerprint} version=")),
        &fingerprint,
    );

    // revoke: 401 within seconds.
    let o = nected_key(&["revoke", "--config", cfg, "me"]);
    t.check("nected-key revoke", o.status.success(), text(&o.stderr));
    let took = wait_status(&envoy, || workflows(&key), 401);
    t.check(
        "the revoked key gets 401 within a few seconds",
        took.is_some_and(|d| d < Duration::from_secs(5)),
        took,
    );
    let reloads = envoy.stat(crate::ecds::RELOADS);

    // A broken edit: logged with its JSON path; the previous config serves.
    let mut broken = std::fs::read_to_string(&config).unwrap();
    broken = broken.replacen("\"sha256\": \"0b6f", "\"sha256\": \"xb6f", 1);
    std::fs::write(&config, broken).unwrap();
    t.check(
        "the broken edit is reported with its JSON path",
        watcher.wait_for("$.keys[0].sha256: must be 64 hex digits"),
        watcher.output(),
    );
    t.check(
        "and said to keep the previous configuration",
        watcher
            .output()
            .contains("rejected; the previous configuration keeps serving"),
        watcher.output(),
    );
    t.passed(
        "the previous config still passes the demo key",
        &envoy.send(workflows(&cron)),
    );
    t.status(
        "the previous config still refuses the revoked key",
        &envoy.send(workflows(&key)),
        401,
    );
    t.check(
        "nothing was published",
        envoy.stat(crate::ecds::RELOADS) == reloads && envoy.stat(crate::ecds::FAILS) == 0,
        (envoy.stat(crate::ecds::RELOADS), reloads),
    );

    // Fixing the file makes it live again.
    std::fs::write(&config, read("envoy/plugin-config.json")).unwrap();
    t.check(
        "the fixed file is published",
        envoy.wait_stat(crate::ecds::RELOADS, reloads + 1),
        envoy.stat(crate::ecds::RELOADS),
    );
    t.finish();
}

/// Counter names in `/stats`, and Envoy's Prometheus form of them with the
/// shipped `stats_tags`.
#[test]
fn per_key_and_per_reason_counters_and_nected_key_usage() {
    let scratch = Scratch::new("usage-config");
    let keys = [
        (
            "billing.2026-11",
            "billing",
            "e2e_key_billing_old_0123456789",
            "",
        ),
        (
            "billing.2026-12",
            "billing",
            "e2e_key_billing_new_0123456789",
            "",
        ),
        ("cron", "cron", "e2e_key_cron_0123456789abcdef", ""),
        (
            "leaked",
            "cron",
            "e2e_key_leaked_0123456789abcd",
            r#", "revoked": true"#,
        ),
        ("never-used", "cron", "e2e_key_never_used_0123456789", ""),
    ];
    let entries: Vec<String> = keys
        .iter()
        .map(|(id, client, key, extra)| {
            format!(
                r#"{{ "id": "{id}", "client": "{client}", "sha256": "{}"{extra} }}"#,
                sha256_hex(key.as_bytes())
            )
        })
        .collect();
    let config_text = format!(
        r#"{{ "routes": [ {{ "name": "rules", "prefix": "/rules", "auth": "private", "allow_clients": ["billing"] }} ],
  "keys": [ {} ] }}"#,
        entries.join(",\n    ")
    );
    let config = scratch.0.join("usage.json");
    std::fs::write(&config, &config_text).unwrap();
    let envoy = Envoy::start(
        "usage",
        demo_setup(&render("envoy-ecds", config.to_str().unwrap())),
    );
    let key = |id: &str| keys.iter().find(|k| k.0 == id).unwrap().2;
    let mut t = Cases::default();
    for _ in 0..2 {
        t.passed(
            "billing new",
            &envoy.send(Req::get("/x").key(key("billing.2026-12"))),
        );
    }
    t.passed(
        "billing old",
        &envoy.send(Req::get("/x").key(key("billing.2026-11"))),
    );
    t.status(
        "cron on a billing route",
        &envoy.send(Req::get("/rules").key(key("cron"))),
        403,
    );
    t.passed(
        "cron elsewhere",
        &envoy.send(Req::get("/x").key(key("cron"))),
    );
    for _ in 0..3 {
        t.status(
            "revoked",
            &envoy.send(Req::get("/x").key(key("leaked"))),
            401,
        );
    }
    t.status(
        "unknown",
        &envoy.send(Req::get("/x").key("e2e_not_a_configured_key_123")),
        401,
    );
    t.status("no key", &envoy.send(Req::get("/x")), 401);

    let stats = text(
        &envoy
            .admin_get("/stats?filter=nected_key_auth")
            .unwrap()
            .body,
    );
    for (name, value) in [
        ("wasmcustom.nected_key_auth.key.billing.2026-12.allowed", 2),
        ("wasmcustom.nected_key_auth.key.billing.2026-11.allowed", 1),
        ("wasmcustom.nected_key_auth.key.cron.allowed", 1),
        ("wasmcustom.nected_key_auth.key.cron.refused", 1),
        ("wasmcustom.nected_key_auth.key.leaked.refused", 3),
        ("wasmcustom.nected_key_auth.denied.revoked", 3),
        ("wasmcustom.nected_key_auth.denied.client_not_allowed", 1),
        ("wasmcustom.nected_key_auth.denied.unknown_key", 1),
        ("wasmcustom.nected_key_auth.denied.no_key", 1),
        ("wasmcustom.nected_key_auth.allowed", 4),
        ("wasmcustom.nected_key_auth.denied_invalid", 4),
    ] {
        t.check(
            &format!("/stats {name}: {value}"),
            stats.lines().any(|l| l == format!("{name}: {value}")),
            &stats,
        );
    }
    t.check(
        "defined on first use: no stat for a key never presented, nor for reasons never seen",
        !stats.contains("never-used") && !stats.contains("denied.expired"),
        &stats,
    );
    t.check(
        "no refused counter for a key that only passed",
        !stats.contains("key.billing.2026-12.refused"),
        &stats,
    );

    let prometheus = text(&envoy.admin_get("/stats/prometheus").unwrap().body);
    for line in [
        r#"nected_key_auth_key_allowed{nected_key_id="billing.2026-12"} 2"#,
        r#"nected_key_auth_key_allowed{nected_key_id="billing.2026-11"} 1"#,
        r#"nected_key_auth_key_refused{nected_key_id="leaked"} 3"#,
        r#"nected_key_auth_key_refused{nected_key_id="cron"} 1"#,
        r#"nected_key_auth_denied{nected_key_auth_reason="revoked"} 3"#,
        r#"nected_key_auth_denied{nected_key_auth_reason="no_key"} 1"#,
        "# TYPE nected_key_auth_key_allowed counter",
        "nected_key_auth_allowed{} 4",
    ] {
        t.check(
            &format!("/stats/prometheus {line}"),
            prometheus.lines().any(|l| l == line),
            prometheus
                .lines()
                .filter(|l| l.contains("nected_key_auth"))
                .collect::<Vec<_>>(),
        );
    }

    // nected-key usage, against this Envoy's admin port.
    let admin = format!("http://127.0.0.1:{}", envoy.admin);
    let cfg = config.to_str().unwrap();
    let o = nected_key(&["usage", "--admin", &admin, "--config", cfg, "--json"]);
    t.check("usage --json", o.status.success(), text(&o.stderr));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap_or_default();
    let row = |id: &str| {
        rows.iter()
            .find(|r| r["id"] == id)
            .cloned()
            .unwrap_or_default()
    };
    t.check(
        "usage: counts per key",
        row("billing.2026-12")["allowed"] == 2
            && row("billing.2026-11")["allowed"] == 1
            && row("cron")["allowed"] == 1
            && row("cron")["refused"] == 1
            && row("leaked")["refused"] == 3,
        &rows,
    );
    t.check(
        "usage: a revoked key still presented is flagged",
        row("leaked")["still_presented"] == true && row("leaked")["state"] == "revoked",
        row("leaked"),
    );
    t.check(
        "usage: a valid key never seen is flagged",
        row("never-used")["never_seen"] == true && row("never-used")["allowed"] == 0,
        row("never-used"),
    );
    t.check(
        "usage: keys in use are not flagged",
        row("cron")["never_seen"] == false && row("cron")["still_presented"] == false,
        row("cron"),
    );
    let o = nected_key(&["usage", "--admin", &admin, "--config", cfg]);
    let table = text(&o.stdout);
    let line = |id: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or("")
            .to_owned()
    };
    t.check(
        "usage table",
        line("leaked").contains("! still presented")
            && line("never-used").contains("never seen")
            && line("billing.2026-12").split_whitespace().nth(3) == Some("2"),
        &table,
    );
    let o = nected_key(&["usage", "--admin", &admin]);
    t.check(
        "usage without --config lists the keys seen",
        o.status.success()
            && text(&o.stdout).contains("billing.2026-11")
            && !text(&o.stdout).contains("never-used"),
        text(&o.stdout),
    );
    let o = nected_key(&["usage", "--admin", "http://127.0.0.1:1"]);
    t.check(
        "usage: an unreachable admin is an error (exit 1, stderr)",
        o.status.code() == Some(1) && o.stdout.is_empty() && !o.stderr.is_empty(),
        o.status,
    );
    t.finish();
}

/// `render --gateway envoy` output, as the only filter before the router
/// in a bootstrap: Envoy loads it, logs the fingerprint `check` shows for
/// the plain JSON and for the rendered file, and it decides requests.
#[test]
fn rendered_envoy_filter_entry_loads_in_envoy_with_the_same_fingerprint() {
    let rendered = render("envoy", "envoy/plugin-config.json");
    let plain = check_fingerprint(&repo().join("envoy/plugin-config.json"));
    let scratch = Scratch::new("rendered-envoy");
    let file = scratch.0.join("filter.yaml");
    std::fs::write(&file, &rendered).unwrap();
    assert_eq!(check_fingerprint(&file), plain);
    let mut setup = Setup::new("");
    setup.bootstrap = Some(format!(
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
{}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
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
        indent(
            &rendered.replace(
                "target/wasm32-wasip1/release/nected_key_auth.wasm",
                "{{WASM}}"
            ),
            10
        )
    ));
    let envoy = Envoy::start("rendered-envoy", setup);
    let mut t = Cases::default();
    t.check(
        "Envoy logs the fingerprint of the plain JSON",
        envoy.log().contains(&format!(
            "config={plain} version={}",
            env!("CARGO_PKG_VERSION")
        )),
        &plain,
    );
    t.check(
        "independently computed canonical fingerprint",
        fingerprint(&read("envoy/plugin-config.json")) == plain,
        &plain,
    );
    t.passed(
        "a demo key passes",
        &envoy.send(Req::get("/api/v1/workflows/x").key(&demo_key("DEMO_KEY_CRON"))),
    );
    t.status(
        "no key: 401",
        &envoy.send(Req::get("/api/v1/workflows/x")),
        401,
    );
    t.finish();
}
