//! The contract on a second proxy-wasm host: nginx + ngx_wasm_module (the
//! engine inside Kong Gateway) + Wasmtime, running the shipped
//! deploy/kong/nginx.conf. The scenario tables are scenarios.rs's.

use crate::harness::*;
use crate::ngx::*;
use crate::scenarios::{self, Host};

/// The contract config with `host_from: host` (`:authority` is nginx's
/// `server_name` there).
pub fn contract_config() -> String {
    crate::contract::config().replace(
        r#""mode": "enforce""#,
        r#""mode": "enforce", "host_from": "host""#,
    )
}

#[test]
fn shared_tables_on_nginx() {
    let mut t = Cases::default();
    let mut not_expressed = Vec::new();
    for (label, config, table) in [
        ("contract", contract_config(), scenarios::contract_rows()),
        ("paths", crate::paths::config(), scenarios::path_rows()),
    ] {
        let nginx = Nginx::start(
            &format!("ngx-shared-{label}"),
            NgxSetup::new(config).underscores(),
        );
        let send = |r: &Req| nginx.send(r.clone());
        not_expressed.extend(scenarios::run(
            Host::Nginx,
            &table,
            nginx.port,
            &send,
            &mut t,
        ));
        let expected = table
            .iter()
            .filter(|s| scenarios::outcome(s, Host::Nginx).is_some())
            .count();
        let lines = nginx.wait_decisions(expected);
        let denied = lines
            .iter()
            .filter(|l| l.contains("] outcome=denied_"))
            .count();
        t.check(
            &format!("{label}: one decision log line per refusal"),
            denied == expected,
            format_args!("want {expected}, got {denied}"),
        );
        t.check(
            &format!("{label}: no worker crash"),
            !nginx.crashed(),
            "signal",
        );
    }
    eprintln!(
        "rows nginx cannot express:\n  {}",
        not_expressed.join("\n  ")
    );
    t.finish();
}

/// The decision and configure lines of the contract table, on nginx: the
/// fingerprint, masking, and never a key or a digest.
#[test]
fn logs_on_nginx_mask_keys_and_never_hold_a_digest() {
    use crate::contract::{K_CRON, K_LEAKED};
    let config = contract_config();
    let nginx = Nginx::start("ngx-logs", NgxSetup::new(config.clone()));
    let mut t = Cases::default();
    let wf = || Req::get("/api/v1/workflows/x");
    for req in [
        wf().key("e2e_unknown_key_GGGGGGGGGGGGGGWXYZ"),
        wf().key("short"),
        wf().key(K_CRON),
        wf().key(K_LEAKED),
    ] {
        nginx.send(req);
    }
    let lines = nginx.wait_decisions(4);
    let log = nginx.log();
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    let summary = format!(
        "configured mode=enforce routes=6 keys=6 clients=3 revoked=1 expired=1 expiring_7d=1 config={}",
        fingerprint(&config)
    );
    t.check(
        "configure line with the fingerprint",
        log.contains(&summary),
        &summary,
    );
    t.check(
        "unknown key masked to its last 4",
        has("reason=unknown_key route=workflows key=****WXYZ"),
        &lines,
    );
    t.check(
        "a short value masked as ****",
        lines
            .iter()
            .any(|l| l.contains("reason=unknown_key") && l.ends_with("key=****")),
        &lines,
    );
    t.check(
        "a key that passed is named by its id",
        has("outcome=allowed reason=valid_key route=workflows key_id=cron client=cron"),
        &lines,
    );
    t.check(
        "a revoked key named by its id",
        has("reason=revoked route=workflows key_id=leaked"),
        &lines,
    );
    for key in [K_CRON, K_LEAKED, "e2e_unknown_key_GGGGGGGGGGGGGGWXYZ"] {
        t.check("no presented key in the log", !log.contains(key), key);
    }
    t.check(
        "no digest in the log",
        !log.contains(&sha256_hex(K_CRON.as_bytes())),
        "digest",
    );
    t.check("no panic", !log.contains("panic"), "panic");
    t.finish();
}

#[test]
fn report_mode_on_nginx_lets_requests_through_and_logs_the_decision() {
    let config = contract_config().replace(r#""mode": "enforce""#, r#""mode": "report""#);
    let nginx = Nginx::start("ngx-report", NgxSetup::new(config));
    let mut t = Cases::default();
    let r = nginx.send(Req::get("/api/v1/workflows/x").header("x-nected-client", "admin"));
    if let Some(e) = t.passed("report: a request without a key passes", &r) {
        t.check(
            "report: a client-sent client header is still removed",
            !e.has("x-nected-client"),
            &e.headers,
        );
    }
    let r = nginx.send(Req::get("/api/v1/workflows/x").key(crate::contract::K_CRON));
    if let Some(e) = t.passed("report: a valid key passes", &r) {
        t.check(
            "report: client set",
            e.all("x-nected-client") == ["cron"],
            &e.headers,
        );
    }
    let lines = nginx.wait_decisions(2);
    t.check(
        "report: the log says what enforce would have done",
        lines
            .iter()
            .any(|l| l.contains("outcome=denied_missing") && l.contains("mode=report")),
        &lines,
    );
    t.finish();
}

/// ngx_wasm_module hands a filter the first 100 header map entries only
/// (`NGX_HTTP_WASM_MAX_REQ_HEADERS`): what lies beyond would reach the
/// upstream unjudged (a forged client header, a second key), so the filter
/// refuses a map of 100 entries or more. Pseudo-headers count: 4 of them,
/// plus `host` and `connection` here.
#[test]
fn a_header_map_cut_by_the_host_is_refused_on_nginx() {
    let nginx = Nginx::start("ngx-headers", NgxSetup::new(contract_config()));
    let mut t = Cases::default();
    let fill = |req: Req, n: usize| (0..n).fold(req, |r, i| r.header(format!("x-filler-{i}"), "v"));
    let key = crate::contract::K_CRON;
    // 4 pseudo + host + 90 + key + client + connection = 98 entries.
    let r = nginx.send(
        fill(Req::get("/api/v1/workflows/x"), 90)
            .key(key)
            .header("x-nected-client", "admin"),
    );
    if let Some(e) = t.passed("98 entries: decided as usual", &r) {
        t.check(
            "98 entries: key removed, client replaced",
            !e.has("nected-api-key") && e.all("x-nected-client") == ["cron"],
            e.headers.len(),
        );
    }
    for n in [93, 150] {
        let r = nginx.send(fill(Req::get("/api/v1/workflows/x"), n).key(key));
        t.status(&format!("{} entries with a valid key: 400", n + 7), &r, 400);
        // A forged client header past the cut, on a public route.
        let r = nginx.send(fill(Req::get("/healthz"), n).header("x-nected-client", "admin"));
        t.status(
            &format!("{} entries, forged client header last: 400", n + 7),
            &r,
            400,
        );
    }
    t.check("no worker crash", !nginx.crashed(), "signal");
    t.finish();
}

/// `require_tls` judges `connection.tls_version`, which ngx_wasm_module
/// answers on a TLS connection and not on a plain one.
#[test]
fn require_tls_on_nginx() {
    let config = contract_config().replace(r#""require_tls": false"#, r#""require_tls": true"#);
    let tls_port = free_port();
    let mut setup = NgxSetup::new(config);
    let scratch = Scratch::new("ngx-tls-cert");
    make_certificate(&scratch.0);
    setup.server_extra = format!(
        "        listen 127.0.0.1:{tls_port} ssl;\n        ssl_certificate {0}/cert.pem;\n        ssl_certificate_key {0}/key.pem;\n",
        scratch.0.display()
    );
    let nginx = Nginx::start("ngx-tls", setup);
    let mut t = Cases::default();
    let r = nginx.send(Req::get("/api/v1/workflows/x").key(crate::contract::K_CRON));
    t.status("plain HTTP to a private route: 403", &r, 403);
    t.check(
        "403 https required",
        r.body_str().trim_end() == r#"{"error":"forbidden","message":"https required"}"#,
        r.body_str(),
    );
    let key = format!("nected-api-key: {}", crate::contract::K_CRON);
    let url = format!("https://127.0.0.1:{tls_port}/api/v1/workflows/x");
    let r = curl(&["--insecure", "-H", &key, &url]);
    if let Some(e) = t.passed("TLS with a valid key passes", &r) {
        t.check(
            "TLS: client set",
            e.all("x-nected-client") == ["cron"],
            &e.headers,
        );
    }
    let r = nginx.send(Req::get("/healthz"));
    t.passed("plain HTTP to a public route passes", &r);
    t.finish();
}

/// A panic in the filter (the test-only build) on this host: that request
/// fails closed, and the next one is served by a fresh instance.
#[test]
fn a_panic_on_nginx_fails_closed() {
    let mut setup = NgxSetup::new(contract_config());
    setup.wasm = crate::failure::crash_wasm();
    let nginx = Nginx::start("ngx-panic", setup);
    let mut t = Cases::default();
    let r = nginx.send(
        Req::get("/healthz")
            .key(crate::contract::K_CRON)
            .header("x-nka-test-crash", "1"),
    );
    t.check(
        "the panicking request never reaches the upstream",
        !r.reached_upstream() && r.status >= 500,
        format_args!("{} {}", r.status, r.body_str()),
    );
    let r = nginx.send(Req::get("/api/v1/workflows/x").key(crate::contract::K_CRON));
    t.passed("the next request is served", &r);
    let r = nginx.send(Req::get("/api/v1/workflows/x"));
    t.status("and still refused without a key", &r, 401);
    t.check("no worker crash", !nginx.crashed(), "signal");
    t.check(
        "the panic message is logged",
        nginx.log().contains("panic"),
        "panic",
    );
    t.finish();
}

/// The host bug the shipped nginx.conf avoids: without `worker_processes`,
/// ngx_wasm_module 3bed278 sizes a metric buffer from an unset worker count
/// and the worker dies (SIGSEGV) on the filter's first `proxy_define_metric`.
/// Should a later host fix it, this test says so.
#[test]
fn without_worker_processes_ngx_wasm_module_crashes_the_worker() {
    let conf = read("deploy/kong/nginx.conf").replace("worker_processes 1;\n", "");
    let mut setup = NgxSetup::new(contract_config());
    setup.conf = Some(conf);
    let nginx = Nginx::start("ngx-no-workers", setup);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !nginx.crashed() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert!(
        nginx.crashed(),
        "the worker no longer crashes without worker_processes: update deploy/kong/README.md"
    );
}

/// `nginx -s reload` (SIGHUP to the master) with a changed plugin
/// configuration: new workers take it; a configuration the filter rejects
/// never lets a request through.
#[test]
fn reload_on_nginx() {
    const K1: &str = "e2e_ngx_reload_key_one_AAAAAAAA1";
    const K2: &str = "e2e_ngx_reload_key_two_BBBBBBBB2";
    let config = |keys: &str| {
        format!(
            r#"{{"host_from": "host", "routes": [{{"name": "health", "path": "/healthz", "auth": "none"}}], "keys": [{keys}]}}"#
        )
    };
    let k = |id: &str, key: &str, revoked: bool| {
        format!(
            r#"{{"id": "{id}", "sha256": "{}", "revoked": {revoked}}}"#,
            sha256_hex(key.as_bytes())
        )
    };
    let first = config(&k("one", K1, false));
    let mut nginx = Nginx::start("ngx-reload", NgxSetup::new(first));
    let mut t = Cases::default();
    let get = |n: &Nginx, key: &str| n.send(Req::get("/api/v1/x").key(key));
    t.passed("before: key one passes", &get(&nginx, K1));
    t.status("before: key two is unknown", &get(&nginx, K2), 401);

    // A new key, the old one revoked.
    let second = config(&format!("{}, {}", k("one", K1, true), k("two", K2, false)));
    nginx.rewrite_conf(&NgxSetup::new(second), nginx.upstream_port());
    nginx.signal("HUP");
    nginx.wait_ready(true, 2).unwrap();
    // New connections go to the new worker once the old one has closed
    // its listening socket: probe until key two passes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !get(&nginx, K2).reached_upstream() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    t.passed("after reload: the new key passes", &get(&nginx, K2));
    t.status(
        "after reload: the revoked key is refused",
        &get(&nginx, K1),
        401,
    );

    // A configuration the filter rejects: nginx itself accepts the file
    // (it does not run filters), starts new workers, and those refuse.
    nginx.rewrite_conf(
        &NgxSetup::new(r#"{"mode": "audit"}"#),
        nginx.upstream_port(),
    );
    nginx.signal("HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !nginx.log().contains("configuration rejected") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    t.check(
        "the rejection is logged with its JSON path",
        nginx
            .log()
            .contains("invalid configuration: $.mode: must be one of"),
        "log",
    );
    // Measured: the new worker exits ("on_configure failure", fatal code
    // 2, not respawned) after the old one was told to quit: no worker is
    // left. The master keeps the listening socket, so a client connects
    // and gets no answer. Never the upstream.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !nginx.log().contains("cannot be respawned") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    t.check(
        "after a rejected reload: the new worker is not respawned",
        nginx
            .log()
            .contains("exited with fatal code 2 and cannot be respawned"),
        "log",
    );
    let answer = request_with_timeout(
        nginx.port,
        &Req::get("/api/v1/x").key(K2).bytes(),
        std::time::Duration::from_secs(3),
    );
    t.check(
        "after a rejected reload: no answer at all, never the upstream",
        answer.is_none(),
        &answer,
    );
    // A good configuration and another reload bring a worker back.
    let third = config(&k("two", K2, false));
    nginx.rewrite_conf(&NgxSetup::new(third), nginx.upstream_port());
    nginx.signal("HUP");
    nginx.wait_ready(true, 3).unwrap();
    t.passed(
        "a good configuration reloaded: served again",
        &get(&nginx, K2),
    );
    t.check("no worker crash", !nginx.crashed(), "signal");
    t.finish();
}
