//! `mode: report`, and the options that change header handling:
//! a custom key header, `strip_key: false`, `forward_client: ""`, CORS
//! preflight on.

use crate::harness::*;

const BILLING: &str = "e2e_modes_billing_key_0123456789";
const CRON: &str = "e2e_modes_cron_key_0123456789abc";

fn keys() -> String {
    format!(
        r#"[ {{ "id": "billing-1", "client": "billing", "sha256": "{}" }},
            {{ "id": "cron", "sha256": "{}" }} ]"#,
        sha256_hex(BILLING.as_bytes()),
        sha256_hex(CRON.as_bytes())
    )
}

#[test]
fn report_mode_lets_everything_through_and_counts_what_enforce_would_do() {
    let config = format!(
        r#"{{
  "mode": "report",
  "log_requests": true,
  "routes": [
    {{ "name": "health", "path": "/healthz", "auth": "none" }},
    {{ "name": "rules", "prefix": "/api/v1/rules", "auth": "private", "allow_clients": ["billing"] }}
  ],
  "keys": {}
}}"#,
        keys()
    );
    let envoy = Envoy::start("report", Setup::new(config));
    let mut t = Cases::default();
    let r = envoy.send(Req::get("/api/v1/rules/x"));
    if let Some(e) = t.passed("missing key passes in report mode", &r) {
        t.check(
            "no client header without a key that passed",
            !e.has("x-nected-client"),
            &e.headers,
        );
    }
    let r = envoy.send(Req::get("/api/v1/rules/x").key("e2e_wrong_key_0000000000000"));
    t.passed("invalid key passes in report mode", &r);
    let r = envoy.send(
        Req::get("/api/v1/rules/x")
            .key(CRON)
            .header("x-nected-client", "admin"),
    );
    if let Some(e) = t.passed("forbidden client passes in report mode", &r) {
        t.check(
            "forward_client only for a key that passed; spoof removed",
            !e.has("x-nected-client"),
            &e.headers,
        );
        t.check(
            "key stripped (strip_key default)",
            !e.has("nected-api-key"),
            &e.headers,
        );
    }
    let r = envoy.send(Req::get("/api/v1/rules/x").key(BILLING));
    if let Some(e) = t.passed("valid key passes", &r) {
        t.check(
            "client set for the key that passed",
            e.all("x-nected-client") == ["billing"],
            &e.headers,
        );
    }
    let r = envoy.send(Req::get("/files/../api/v1/rules"));
    t.passed("ambiguous request passes in report mode", &r);
    let r = envoy.send(Req::get("/healthz").header("x_nected_client", "admin"));
    if let Some(e) = t.passed("public route", &r) {
        t.check(
            "spoof removed in report mode",
            !e.has("x_nected_client"),
            &e.headers,
        );
    }
    let c = envoy.counters();
    for (outcome, n) in [
        ("denied_missing", 1),
        ("denied_invalid", 1),
        ("denied_forbidden", 1),
        ("allowed", 1),
        ("denied_bad_request", 1),
        ("public", 1),
    ] {
        t.check(
            &format!("report counts {outcome}"),
            c.get(outcome) == Some(&n),
            &c,
        );
    }
    let log = envoy.wait_decisions(6);
    t.check(
        "report mode logs what enforce would do",
        log.iter().any(|l| l.contains("outcome=denied_forbidden reason=client_not_allowed route=rules key_id=cron client=cron mode=report")),
        &log,
    );
    t.check(
        "report mode in the summary",
        log.iter().any(|l| l.contains("configured mode=report")),
        &log,
    );
    t.finish();
}

#[test]
fn custom_header_no_strip_no_forward_and_cors_preflight() {
    let config = format!(
        r#"{{
  "header": "x-api-key",
  "strip_key": false,
  "forward_client": "",
  "allow_cors_preflight": true,
  "routes": [ {{ "name": "all", "prefix": "/", "auth": "private" }} ],
  "keys": {}
}}"#,
        keys()
    );
    let envoy = Envoy::start("options", Setup::new(config));
    let mut t = Cases::default();
    let r = envoy.send(Req::get("/x").key(CRON));
    t.status(
        "the default header name is not the key header any more",
        &r,
        401,
    );
    t.check(
        "www-authenticate names the configured header",
        r.header("www-authenticate").as_deref() == Some(r#"ApiKey header="x-api-key""#),
        r.header("www-authenticate"),
    );
    let r = envoy.send(
        Req::get("/x")
            .header("X-Api-Key", CRON)
            .header("x-nected-client", "admin"),
    );
    if let Some(e) = t.passed("custom header, any case", &r) {
        t.check(
            "strip_key false: key forwarded",
            e.all("x-api-key") == [CRON],
            &e.headers,
        );
        t.check(
            "forward_client off: nothing set, nothing removed",
            e.all("x-nected-client") == ["admin"],
            &e.headers,
        );
    }
    let preflight = Req::new("OPTIONS", "/x")
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST");
    let r = envoy.send(preflight.clone().header("x-api-key", CRON));
    if let Some(e) = t.passed("CORS preflight passes without a key check", &r) {
        t.check(
            "preflight: key header removed even with strip_key false",
            !e.has("x-api-key"),
            &e.headers,
        );
    }
    let r = envoy.send(Req::new("OPTIONS", "/x").header("origin", "https://app.example.com"));
    t.status(
        "OPTIONS without Access-Control-Request-Method is not a preflight",
        &r,
        401,
    );
    let r = envoy.send(
        Req::get("/x")
            .header("origin", "https://a")
            .header("access-control-request-method", "GET"),
    );
    t.status("GET with CORS headers is not a preflight", &r, 401);
    let r = envoy.send(preflight.clone().header("x-http-method-override", "DELETE"));
    t.status("preflight with a method override is still refused", &r, 400);
    let r = envoy.send(
        Req::new("OPTIONS", "/../x")
            .header("origin", "https://a")
            .header("access-control-request-method", "GET"),
    );
    t.status("preflight after step 1: bad path refused", &r, 400);
    let r = envoy.send(
        Req::new("OPTIONS", "/x")
            .header("origin", "")
            .header("access-control-request-method", "POST"),
    );
    t.status("an empty Origin does not make a preflight", &r, 401);
    let url = format!("http://127.0.0.1:{}/x", envoy.port());
    let r = curl(&[
        "--http2-prior-knowledge",
        "-X",
        "options",
        "-H",
        "origin: https://a",
        "-H",
        "access-control-request-method: GET",
        &url,
    ]);
    t.status(
        "HTTP/2 `options` (not exactly OPTIONS) is not a preflight",
        &r,
        401,
    );
    let c = envoy.counters();
    t.check(
        "preflight counts as public",
        c.get("public") == Some(&1),
        &c,
    );
    t.finish();
}

/// `log_requests`: the per-request decision line is written only when it
/// is true. Both Envoys log `wasm` and `router` at debug; the router's line
/// for the last (allowed) request is written after the filter handled both
/// requests, so once it is in the log, so would be any decision line.
#[test]
fn refusals_are_always_logged_passes_only_with_log_requests() {
    let config = |extra: &str| format!(r#"{{ {extra}"keys": {} }}"#, keys());
    let mut t = Cases::default();
    for (name, extra, want) in [
        ("log-requests-on", r#""log_requests": true, "#, 2),
        ("log-requests-default", "", 1),
        ("log-requests-off", r#""log_requests": false, "#, 1),
    ] {
        let envoy = Envoy::start(
            name,
            Setup::new(config(extra)).log_args(&[
                "--log-level",
                "info",
                "--component-log-level",
                "wasm:debug,router:debug",
            ]),
        );
        let r = envoy.send(Req::get("/a").key("e2e_modes_wrong_key_0123456789ab"));
        t.status(&format!("{name}: wrong key"), &r, 401);
        let r = envoy.send(Req::get("/b").key(CRON));
        t.passed(&format!("{name}: valid key"), &r);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !envoy.log().contains("router decoding headers")
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let log = envoy.filter_log();
        let lines: Vec<&String> = log.iter().filter(|l| l.contains(": outcome=")).collect();
        t.check(
            &format!("{name}: {want} decision lines"),
            envoy.log().contains("router decoding headers") && lines.len() == want,
            &lines,
        );
        t.check(
            &format!("{name}: the refusal is logged, with the masked key"),
            lines.iter().any(|l| {
                l.contains("outcome=denied_invalid reason=unknown_key route=")
                    && l.ends_with("key=****89ab")
            }),
            &lines,
        );
        t.check(
            &format!("{name}: the pass is logged only with log_requests"),
            lines.iter().any(|l| {
                l.contains("outcome=allowed reason=valid_key") && l.contains("key_id=cron")
            }) == (want == 2),
            &lines,
        );
    }
    t.finish();
}

#[test]
fn host_from_host_on_envoy_judges_a_host_header_envoy_never_passes() {
    // Envoy turns an HTTP/1.1 `Host` into `:authority`, so the filter sees
    // no `host` header: with `host_from: host` (meant for hosts whose
    // `:authority` is not the client's, as on Kong) every request is 400,
    // never judged by a host it did not read.
    let config = format!(
        r#"{{ "host_from": "host",
  "routes": [ {{ "name": "health", "path": "/healthz", "auth": "none" }} ],
  "keys": {} }}"#,
        keys()
    );
    let envoy = Envoy::start("host-from-host", Setup::new(config));
    let mut t = Cases::default();
    let r = envoy.send(Req::get("/healthz"));
    t.status("public route, no host header in the map: 400", &r, 400);
    let r = envoy.send(Req::get("/api/x").key(CRON));
    t.status("valid key, no host header in the map: 400", &r, 400);
    t.check(
        "counted as bad_host",
        envoy.stat("wasmcustom.nected_key_auth.denied.bad_host") == 2,
        envoy.counters(),
    );
    t.finish();
}
